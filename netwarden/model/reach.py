"""Which pods NetworkPolicy cannot reach: one predicate for the webhook and the reconciler.

CNIs enforce NetworkPolicy on a pod's own network interface. A pod with `hostNetwork: true` shares
its node's interfaces, so no NetworkPolicy (baseline, tightening or quarantine) applies to it: writing
one would promise containment that does not exist. The webhook warns at admission; the reconciler
writes such a pod no baseline and no quarantine, says why in an Event, and `explain` shows it.
Pure: a Pod (wire dict) in, a reason or None out.
"""

from __future__ import annotations

from typing import Any, Mapping

HOST_NETWORK_REASON = (
    "the pod uses hostNetwork: NetworkPolicy does not apply to it (CNIs enforce policy on pod network "
    "interfaces only), so netwarden writes it no baseline and cannot quarantine it"
)


def outside_policy_reach(pod: Mapping[str, Any]) -> str | None:
    """Why NetworkPolicy cannot restrict this pod (None when it can)."""
    spec = pod.get("spec") if isinstance(pod, Mapping) else None
    if isinstance(spec, Mapping) and spec.get("hostNetwork") is True:
        return HOST_NETWORK_REASON
    return None
