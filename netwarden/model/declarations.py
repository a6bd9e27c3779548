"""Parsing what a pod declares about its peers (`netwarden.io/allow-from`, `netwarden.io/allow-to`).

Grammar (entries separated by commas or whitespace):

    entry     := kind "=" value [ "@" namespace ] [ ":" ports [ "/" protocol ] ]
    ports     := port [ "-" end_port ] | port_name
    kind      := purpose | identity | namespace | cidr
    namespace := a namespace name, or "*" for every namespace

Examples: `purpose=frontend`, `purpose=database:5432`, `identity=shop.deploy.api@shop:8080/TCP`,
`namespace=monitoring:9090`, `cidr=203.0.113.0/24:443`, `purpose=web:http`.

A port name (an IANA service name, as a containerPort's `name`) renders as a named port, which
NetworkPolicy resolves on the destination: in allow-from, against this pod's own containerPorts; in
allow-to, against the peer pod's (so it never matches a cidr peer, which is no pod).

A purpose peer without `@namespace` means the workload's own namespace. Bad entries are reported,
never guessed at; the good ones still apply.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Mapping

from netwarden.model import names
from netwarden.model.labelvalues import is_dns_label, is_valid_label_value
from netwarden.model.policy import ANY_NAMESPACE, Peer, PortSpec, Rule

_PORT_SUFFIX = re.compile(r"^(?P<port>\d{1,5})(?:-(?P<end>\d{1,5}))?(?:/(?P<proto>TCP|UDP|SCTP))?$", re.IGNORECASE)
_NAMED_PORT_SUFFIX = re.compile(r"^(?P<name>[a-z0-9-]{1,15})(?:/(?P<proto>TCP|UDP|SCTP))?$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s,]+")
KINDS = ("purpose", "identity", "namespace", "cidr")


@dataclass(frozen=True)
class ParsedDeclarations:
    rules: tuple[Rule, ...]
    errors: tuple[str, ...]


def parse_peer_declarations(text: str | None) -> ParsedDeclarations:
    """Parse an allow-from / allow-to annotation value into rules (one per entry)."""
    rules: list[Rule] = []
    errors: list[str] = []
    for entry in _SEPARATORS.split((text or "").strip()):
        if not entry:
            continue
        try:
            rules.append(parse_entry(entry))
        except ValueError as exc:
            errors.append(f"{entry!r}: {exc}")
    return ParsedDeclarations(tuple(rules), tuple(errors))


def warnings_of(key: str, parsed: ParsedDeclarations) -> list[str]:
    """The warning for each bad entry of the annotation `key`: one wording for the admission warning
    and the Event on the workload."""
    return [f"annotation {key}: {error}; entry ignored" for error in parsed.errors]


def declaration_warnings(annotations: Mapping[str, str]) -> tuple[str, ...]:
    """Every warning a pod's allow-from and allow-to annotations give (their bad entries)."""
    out: list[str] = []
    for key in (names.ANNOTATION_ALLOW_FROM, names.ANNOTATION_ALLOW_TO):
        out += warnings_of(key, parse_peer_declarations(annotations.get(key)))
    return tuple(out)


def parse_entry(entry: str) -> Rule:
    kind, sep, rest = entry.partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS:
        raise ValueError(f"expected one of {', '.join(k + '=' for k in KINDS)}")
    rest, ports = _split_port(rest)
    value, _, namespace = rest.partition("@")
    if not value:
        raise ValueError("empty value")
    if kind == "cidr":
        if namespace:
            raise ValueError("a cidr peer takes no @namespace")
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ValueError(f"invalid CIDR: {exc}") from None
        return Rule((Peer("cidr", str(network)),), ports)
    if kind == "namespace":
        if namespace:
            raise ValueError("a namespace peer takes no @namespace")
        if value != ANY_NAMESPACE and not is_dns_label(value):
            raise ValueError("invalid namespace name")
        return Rule((Peer("namespace", value),), ports)
    if not is_valid_label_value(value):
        raise ValueError("invalid label value (63 characters of [A-Za-z0-9_.-])")
    if namespace and namespace != ANY_NAMESPACE and not is_dns_label(namespace):
        raise ValueError("invalid namespace name after @")
    return Rule((Peer(kind, value, namespace or None),), ports)  # type: ignore[arg-type]


def _split_port(text: str) -> tuple[str, tuple[PortSpec, ...]]:
    head, sep, tail = text.rpartition(":")
    if not sep:
        return text, ()
    match = _PORT_SUFFIX.match(tail)
    if match is None:
        if "/" in tail and head.count(":") >= 1:
            return text, ()  # an IPv6 CIDR, not a port
        named = _NAMED_PORT_SUFFIX.match(tail)
        if named is not None:
            if not is_port_name(named["name"]):
                raise ValueError(f"invalid port name {named['name']!r} (lowercase letters, digits and '-', "
                                 "at least one letter, no '-' at either end or twice in a row, 15 at most)")
            return head, (PortSpec((named["proto"] or "TCP").upper(), named["name"]),)
        raise ValueError(f"invalid port {tail!r} (expected PORT[-END] or a port name, then [/TCP|UDP|SCTP])")
    port = int(match["port"])
    end = int(match["end"]) if match["end"] else None
    if not 1 <= port <= 65535 or (end is not None and not port <= end <= 65535):
        raise ValueError("port out of range 1-65535")
    return head, (PortSpec((match["proto"] or "TCP").upper(), port, end),)


def is_port_name(name: str) -> bool:
    """An IANA_SVC_NAME, what Kubernetes accepts as a containerPort's name and a named port."""
    return (1 <= len(name) <= 15 and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name) is not None
            and "--" not in name and any(c.isalpha() for c in name))
