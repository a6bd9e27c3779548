"""netwarden's own JSON-lines flow format, for sources we have no parser for. Types only, no logic.

Documented with an example in reconciler/signals/README.md.
"""

from __future__ import annotations

from typing import Literal, TypedDict


class GenericEndpoint(TypedDict, total=False):
    ip: str
    namespace: str
    pod: str
    labels: dict[str, str]
    #: True when the peer is outside the cluster.
    world: bool


class GenericFlow(TypedDict, total=False):
    #: RFC 3339 string or epoch seconds (int or float). Required.
    time: str | int | float
    #: Required, with `dst`.
    src: GenericEndpoint
    dst: GenericEndpoint
    #: Destination port; absent or null for ICMP.
    port: int | None
    #: TCP (default), UDP, SCTP, ICMP, ICMPv6.
    protocol: str
    verdict: Literal["forwarded", "dropped", "unknown"]
    policy_dropped: bool
    reply: bool
    bytes: int
    packets: int
