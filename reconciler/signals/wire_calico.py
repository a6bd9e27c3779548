"""Calico Enterprise flow log records (`/var/log/calico/flowlogs/flows.log`, or the Elasticsearch
flow index, which adds `host` and `@timestamp`). Types only, no logic.

Aggregated records use placeholders: `"-"` for a name hidden by aggregation (see `*_name_aggr`),
null for IPs and ports hidden by aggregation.
"""

from __future__ import annotations

from typing import Literal, TypedDict

#: wep: workload endpoint (a pod); hep: host endpoint; ns: network set; net: any other network
#: ("pub" or "pvt" in `*_name_aggr`).
EndpointType = Literal["wep", "hep", "ns", "net"]


class Labels(TypedDict):
    labels: list[str]  # "key=value"


class Policies(TypedDict):
    #: "index|tier|name|action" (older) or "index|tier|name|action|ruleIndex".
    all_policies: list[str]


class FlowLog(TypedDict, total=False):
    start_time: int  # epoch seconds
    end_time: int
    source_ip: str | None
    source_name: str
    source_name_aggr: str
    source_namespace: str
    source_port: int | None
    source_type: EndpointType
    source_labels: Labels
    dest_ip: str | None
    dest_name: str
    dest_name_aggr: str
    dest_namespace: str
    dest_port: int | None
    dest_type: EndpointType
    dest_labels: Labels
    dest_service_namespace: str
    dest_service_name: str
    dest_service_port: str
    dest_service_port_num: int | None
    #: "tcp", "udp", ... or an IP protocol number.
    proto: str | int
    action: Literal["allow", "deny"]
    reporter: Literal["src", "dst"]
    policies: Policies
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int
    num_flows: int
    num_flows_started: int
    num_flows_completed: int
    original_source_ips: list[str] | None
    num_original_source_ips: int
    #: Only in the Elasticsearch index, with "@timestamp" (milliseconds; not a valid identifier, so
    #: not declared here).
    host: str
