"""Object validation with apimachinery's field paths and messages; returns StatusCauses (empty = valid)."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from localkube.resources import ResourceType
from localkube.wire import StatusCause

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")

MSG_DNS1123_LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                     "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                     "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
MSG_DNS1123_SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                         "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                         "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
MSG_DNS1035_LABEL = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                     "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
                     "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
MSG_LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
                   "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
                   "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
MSG_QUALIFIED_NAME = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                      "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                      "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
PROTOCOLS = ("SCTP", "TCP", "UDP")


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def invalid(field: str, value: Any, detail: str) -> StatusCause:
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {_fmt(value)}: {detail}", "field": field}


def required(field: str, detail: str = "") -> StatusCause:
    return {"reason": "FieldValueRequired", "message": f"Required value: {detail}" if detail else "Required value",
            "field": field}


def unsupported(field: str, value: Any, supported: tuple[str, ...]) -> StatusCause:
    listed = ", ".join(json.dumps(s) for s in supported)
    return {"reason": "FieldValueNotSupported",
            "message": f"Unsupported value: {_fmt(value)}: supported values: {listed}", "field": field}


def forbidden(field: str, detail: str) -> StatusCause:
    return {"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}", "field": field}


def duplicate(field: str, value: Any) -> StatusCause:
    return {"reason": "FieldValueDuplicate", "message": f"Duplicate value: {_fmt(value)}", "field": field}


def _name_errors(value: str, rule: str) -> list[str]:
    if rule == "label":
        errs = [] if DNS1123_LABEL.fullmatch(value) else [MSG_DNS1123_LABEL]
        return (["must be no more than 63 characters"] if len(value) > 63 else []) + errs
    if rule == "dns1035":
        errs = [] if DNS1035_LABEL.fullmatch(value) else [MSG_DNS1035_LABEL]
        return (["must be no more than 63 characters"] if len(value) > 63 else []) + errs
    if rule == "path":
        if value in (".", ".."):
            return [f"may not be '{value}'"]
        return [f"may not contain '{c}'" for c in "/%" if c in value]
    errs = [] if DNS1123_SUBDOMAIN.fullmatch(value) else [MSG_DNS1123_SUBDOMAIN]
    return (["must be no more than 253 characters"] if len(value) > 253 else []) + errs


def name_rule(rt: ResourceType) -> str:
    if rt.kind == "Namespace":
        return "label"
    if rt.kind == "Service":
        return "dns1035"
    if rt.group == "rbac.authorization.k8s.io":
        return "path"
    return "subdomain"


def label_key_errors(key: str) -> list[str]:
    prefix, _, name = key.rpartition("/")
    errs = []
    if "/" in prefix:
        errs.append("a qualified name " + MSG_QUALIFIED_NAME.replace("name part ", "")
                    + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")
        return errs
    if prefix:
        if len(prefix) > 253:
            errs.append("prefix part must be no more than 253 characters")
        elif not DNS1123_SUBDOMAIN.fullmatch(prefix):
            errs.append("prefix part " + MSG_DNS1123_SUBDOMAIN)
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    elif not QUALIFIED_NAME.fullmatch(name):
        errs.append(MSG_QUALIFIED_NAME)
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = ["must be no more than 63 characters"] if len(value) > 63 else []
    if not LABEL_VALUE.fullmatch(value):
        errs.append(MSG_LABEL_VALUE)
    return errs


def validate_labels(labels: Any, field: str) -> list[StatusCause]:
    causes: list[StatusCause] = []
    if not isinstance(labels, dict):
        return causes
    for k, v in labels.items():
        causes += [invalid(field, k, e) for e in label_key_errors(k)]
        if not isinstance(v, str):
            causes.append(invalid(f"{field}", v, "must be a string"))
        else:
            causes += [invalid(field, v, e) for e in label_value_errors(v)]
    return causes


def validate_label_selector(sel: Any, field: str) -> list[StatusCause]:
    if sel is None:
        return []
    causes = validate_labels(sel.get("matchLabels"), f"{field}.matchLabels")
    for i, expr in enumerate(sel.get("matchExpressions") or []):
        path = f"{field}.matchExpressions[{i}]"
        op = expr.get("operator")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            causes.append(unsupported(f"{path}.operator", op, ("DoesNotExist", "Exists", "In", "NotIn")))
        elif op in ("In", "NotIn") and not expr.get("values"):
            causes.append(required(f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist") and expr.get("values"):
            causes.append(forbidden(f"{path}.values", "may not be specified when `operator` is 'Exists' or "
                                    "'DoesNotExist'"))
        causes += [invalid(f"{path}.key", expr.get("key", ""), e) for e in label_key_errors(expr.get("key", ""))]
    return causes


def validate_metadata(rt: ResourceType, obj: dict[str, Any]) -> list[StatusCause]:
    meta = obj.get("metadata") or {}
    causes: list[StatusCause] = []
    name = meta.get("name")
    if not name:
        causes.append(required("metadata.name", "name or generateName is required"))
    else:
        causes += [invalid("metadata.name", name, e) for e in _name_errors(name, name_rule(rt))]
    causes += validate_labels(meta.get("labels"), "metadata.labels")
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for f in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(f):
                causes.append(required(f"metadata.ownerReferences[{i}].{f}", ""))
    return causes


def _port_in_range(port: Any) -> bool:
    return isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535


def validate_pod_spec(spec: Any, field: str) -> list[StatusCause]:
    causes: list[StatusCause] = []
    if not isinstance(spec, dict):
        return [required(field)]
    containers = spec.get("containers") or []
    if not containers:
        causes.append(required(f"{field}.containers"))
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            path = f"{field}.{group}[{i}]"
            cname = c.get("name")
            if not cname:
                causes.append(required(f"{path}.name"))
            else:
                causes += [invalid(f"{path}.name", cname, e) for e in _name_errors(cname, "label")]
                if cname in seen:
                    causes.append(duplicate(f"{path}.name", cname))
                seen.add(cname)
            if not c.get("image"):
                causes.append(required(f"{path}.image"))
            for j, p in enumerate(c.get("ports") or []):
                ppath = f"{path}.ports[{j}]"
                if "containerPort" not in p:
                    causes.append(required(f"{ppath}.containerPort"))
                elif not _port_in_range(p["containerPort"]):
                    causes.append(invalid(f"{ppath}.containerPort", p["containerPort"],
                                          "must be between 1 and 65535, inclusive"))
                if p.get("protocol", "TCP") not in PROTOCOLS:
                    causes.append(unsupported(f"{ppath}.protocol", p.get("protocol"), PROTOCOLS))
    return causes


def _validate_np_port(p: dict[str, Any], path: str) -> list[StatusCause]:
    causes: list[StatusCause] = []
    proto = p.get("protocol", "TCP")
    if proto not in PROTOCOLS:
        causes.append(unsupported(f"{path}.protocol", proto, PROTOCOLS))
    port, end = p.get("port"), p.get("endPort")
    if isinstance(port, int) and not isinstance(port, bool):
        if not _port_in_range(port):
            causes.append(invalid(f"{path}.port", port, "must be between 1 and 65535, inclusive"))
        if end is not None:
            if not _port_in_range(end):
                causes.append(invalid(f"{path}.endPort", end, "must be between 1 and 65535, inclusive"))
            elif end < port:
                causes.append(invalid(f"{path}.endPort", end, "must be greater than or equal to `port`"))
    elif isinstance(port, str):
        if len(port) > 15 or not IANA_SVC_NAME.fullmatch(port) or "--" in port or not re.search("[a-z]", port):
            causes.append(invalid(f"{path}.port", port, "must contain only alpha-numeric characters (a-z, 0-9), "
                                  "and hyphens (-)"))
        if end is not None:
            causes.append(invalid(f"{path}.endPort", end, "may not be specified when `port` is non-numeric"))
    elif port is None and end is not None:
        causes.append(invalid(f"{path}.endPort", end, "may not be specified when `port` is not specified"))
    return causes


def _validate_np_peer(peer: dict[str, Any], path: str) -> list[StatusCause]:
    causes: list[StatusCause] = []
    kinds = sum(1 for k in ("podSelector", "namespaceSelector") if peer.get(k) is not None)
    ip_block = peer.get("ipBlock")
    if ip_block is not None and kinds:
        return [forbidden(path, "may not specify more than 1 peer type")]
    if ip_block is None and not kinds:
        return [required(path, "must specify a peer")]
    causes += validate_label_selector(peer.get("podSelector"), f"{path}.podSelector")
    causes += validate_label_selector(peer.get("namespaceSelector"), f"{path}.namespaceSelector")
    if ip_block is not None:
        cidr = ip_block.get("cidr")
        if not cidr:
            return causes + [required(f"{path}.ipBlock.cidr")]
        try:
            net = ipaddress.ip_network(cidr, strict=False)
            if "/" not in cidr:
                raise ValueError(cidr)
        except ValueError:
            return causes + [invalid(f"{path}.ipBlock.cidr", cidr,
                                     "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]
        for k, exc in enumerate(ip_block.get("except") or []):
            epath = f"{path}.ipBlock.except[{k}]"
            try:
                sub = ipaddress.ip_network(exc, strict=False)
                if "/" not in exc:
                    raise ValueError(exc)
            except ValueError:
                causes.append(invalid(epath, exc, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
                continue
            if sub.version != net.version or not sub.subnet_of(net) or sub.prefixlen <= net.prefixlen:  # type: ignore[arg-type]
                causes.append(invalid(epath, exc, "must be a strict subset of `cidr`"))
    return causes


def validate_network_policy(obj: dict[str, Any]) -> list[StatusCause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec.podSelector")]
    causes: list[StatusCause] = []
    if spec.get("podSelector") is None:
        causes.append(required("spec.podSelector"))
    causes += validate_label_selector(spec.get("podSelector"), "spec.podSelector")
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            for j, p in enumerate(rule.get("ports") or []):
                causes += _validate_np_port(p, f"spec.{direction}[{i}].ports[{j}]")
            for j, peer in enumerate(rule.get(peers_key) or []):
                causes += _validate_np_peer(peer, f"spec.{direction}[{i}].{peers_key}[{j}]")
    types = spec.get("policyTypes") or []
    if len(types) > 2:
        causes.append(invalid("spec.policyTypes", types, "may not specify more than two policyTypes"))
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            causes.append(unsupported(f"spec.policyTypes[{i}]", t, ("Egress", "Ingress")))
    return causes


def validate(rt: ResourceType, obj: dict[str, Any]) -> list[StatusCause]:
    """All causes for obj as a create/update body of type rt."""
    causes = validate_metadata(rt, obj)
    if rt.kind == "Pod" and rt.group == "":
        causes += validate_pod_spec(obj.get("spec"), "spec")
    elif rt.kind == "NetworkPolicy":
        causes += validate_network_policy(obj)
    elif rt.kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"):
        spec = obj.get("spec") or {}
        if rt.kind != "Job" and not spec.get("selector"):
            causes.append(required("spec.selector"))
        template = spec.get("template") or {}
        causes += validate_labels((template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels")
        causes += validate_pod_spec(template.get("spec"), "spec.template.spec")
    return causes


def validate_custom(obj: dict[str, Any], schema: dict[str, Any] | None) -> list[StatusCause]:
    """A custom resource against its CRD's openAPIV3Schema (types, enums, bounds, required; no CEL rules).

    Checked only where jsonschema is installed (the tests' environment); otherwise accepted as is.
    """
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - localkube works without it, just less strict
        return []
    if not schema:
        return []
    body = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    causes: list[StatusCause] = []
    for error in sorted(jsonschema.Draft7Validator({**schema, "properties": {
            k: v for k, v in (schema.get("properties") or {}).items() if k not in ("metadata", "status")},
            "required": [r for r in schema.get("required") or [] if r != "metadata"]}).iter_errors(body),
            key=lambda e: list(e.absolute_path)):
        field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path).replace(".[", "[")
        causes.append({"reason": "FieldValueInvalid", "message": f"Invalid value: {error.message}", "field": field})
    return causes


POD_MUTABLE_SPEC = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def validate_pod_update(new: dict[str, Any], old: dict[str, Any]) -> list[StatusCause]:
    """Pods are mostly immutable: only images, activeDeadlineSeconds and tolerations may change."""
    def strip(spec: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in spec.items() if k not in POD_MUTABLE_SPEC}
        for group in ("containers", "initContainers"):
            if group in out:
                out[group] = [{k: v for k, v in c.items() if k != "image"} for c in out[group]]
        return out

    if strip(new.get("spec") or {}) != strip(old.get("spec") or {}):
        return [forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,"
                          "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                          "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                          "(allow it to be set to 1 if it was previously negative)")]
    return []
