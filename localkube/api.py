"""The REST verbs over the generic store: defaults, validation, admission, optimistic concurrency."""

from __future__ import annotations

import base64
import copy
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from localkube import validation
from localkube.admission import Attributes, Dispatcher
from localkube.errors import ApiError, bad_request, conflict, invalid, not_found
from localkube.patching import json_patch, merge_patch, strategic_merge
from localkube.resources import FIELD_SELECTORS, ResourceType, lookup
from localkube.selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from localkube.store import Obj, Store
from localkube.wire import UserInfo

NAMESPACES = lookup("", "v1", "namespaces")
SERVICE_ACCOUNTS = lookup("", "v1", "serviceaccounts")
ADMIN: UserInfo = {"username": "system:admin", "groups": ["system:masters", "system:authenticated"]}
GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
RETURNS_DELETED_OBJECT = {"Pod", "Service", "Namespace", "Node"}
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")


def rfc3339(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


@dataclass
class Request:
    """Per-request context the verbs need."""

    user: UserInfo = field(default_factory=lambda: dict(ADMIN))  # type: ignore[arg-type]
    dry_run: bool = False
    field_manager: str = ""
    force: bool = False
    warnings: list[str] = field(default_factory=list)


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


def _fields_v1(value: Any) -> Obj:
    if isinstance(value, dict):
        return {f"f:{k}": _fields_v1(v) for k, v in value.items()}
    return {}


def apply_defaults(rt: ResourceType, obj: Obj) -> None:
    """The handful of API defaults netwarden relies on (what decoding does upstream)."""
    obj.setdefault("apiVersion", rt.api_version)
    obj.setdefault("kind", rt.kind)
    if rt.group == "" and rt.kind == "Pod":
        spec = obj.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("securityContext", {})
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        for group in ("containers", "initContainers"):
            for c in spec.get(group) or []:
                image = str(c.get("image", ""))
                tag = image.rsplit("/", 1)[-1]
                latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
                c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
                c.setdefault("terminationMessagePath", "/dev/termination-log")
                c.setdefault("terminationMessagePolicy", "File")
                c.setdefault("resources", {})
                for p in c.get("ports") or []:
                    p.setdefault("protocol", "TCP")
    elif rt.kind == "Namespace":
        meta = _meta(obj)
        labels = meta.get("labels") or {}
        labels["kubernetes.io/metadata.name"] = meta.get("name", "")
        meta["labels"] = labels
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    elif rt.kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
    elif rt.kind == "NetworkPolicy":
        spec = obj.setdefault("spec", {})
        if not spec.get("policyTypes"):
            spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        for direction in ("ingress", "egress"):
            for rule in spec.get(direction) or []:
                for p in rule.get("ports") or []:
                    p.setdefault("protocol", "TCP")
        obj["spec"] = omit_empty(spec)
        obj["spec"].setdefault("podSelector", {})
    elif rt.kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        obj.setdefault("spec", {}).setdefault("replicas", 1)


def omit_empty(value: Any) -> Any:
    """What Go's `omitempty` does to a NetworkPolicy spec on the way through the real server: null
    fields, empty lists and empty label maps vanish (`ingress: []` is stored as no `ingress` key);
    empty selectors (`podSelector: {}`, `namespaceSelector: {}`) and empty rules (`{}`) stay."""
    if isinstance(value, dict):
        return {k: omit_empty(v) for k, v in value.items()
                if not (v is None or v == [] or (v == {} and k == "matchLabels"))}
    if isinstance(value, list):
        return [omit_empty(v) for v in value]
    return value


def reset_status_on_create(rt: ResourceType, obj: Obj) -> None:
    """PrepareForCreate: clients cannot set status of types with a status subresource."""
    if not rt.status_subresource:
        return
    if rt.kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj)}
    elif rt.kind == "Namespace":
        obj["status"] = {"phase": "Active"}
    elif rt.kind == "Service":
        obj["status"] = {"loadBalancer": {}}
    else:
        obj["status"] = copy.deepcopy(INITIAL_STATUS.get(rt.kind, {}))


#: zero-valued status fields upstream always serialises (ints without omitempty)
INITIAL_STATUS: dict[str, Obj] = {
    "ReplicaSet": {"replicas": 0},
    "StatefulSet": {"replicas": 0, "availableReplicas": 0},
    "DaemonSet": {"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0,
                  "numberReady": 0},
    "PodDisruptionBudget": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0},
}


def _qos_class(pod: Obj) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    if not any((c.get("resources") or {}).get("requests") or (c.get("resources") or {}).get("limits")
               for c in containers):
        return "BestEffort"
    guaranteed = all((c.get("resources") or {}).get("limits", {}).get(r) and
                     (c.get("resources") or {}).get("requests", {}).get(r, (c.get("resources") or {})
                                                                        .get("limits", {}).get(r)) ==
                     (c.get("resources") or {}).get("limits", {}).get(r)
                     for c in containers for r in ("cpu", "memory"))
    return "Guaranteed" if guaranteed else "Burstable"


def _without_managed(obj: Obj) -> Obj:
    out = dict(obj)
    out["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return out


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _status_update(rt: ResourceType, new: Obj, old: Obj) -> Obj:
    """The status strategies' PrepareForUpdate: everything but metadata and status stays as stored;
    metadata changes do go through (kubelets patch pod labels that way), except a pod's ownerReferences
    and a Deployment's labels, which upstream pins to the stored values."""
    out = {**copy.deepcopy(_spec_part(old)), "apiVersion": new.get("apiVersion", old.get("apiVersion")),
           "kind": new.get("kind", old.get("kind")), "metadata": _meta(new)}
    if new.get("status") is not None:
        out["status"] = new["status"]
    old_meta = old.get("metadata") or {}
    pinned = {("", "Pod"): "ownerReferences", ("apps", "Deployment"): "labels"}.get((rt.group, rt.kind))
    if pinned:
        if pinned in old_meta:
            out["metadata"][pinned] = copy.deepcopy(old_meta[pinned])
        else:
            out["metadata"].pop(pinned, None)
    return out


def _touched(body: Any) -> Obj:
    """The fields a write names: the body's keys, or for a JSON patch the paths its operations touch."""
    if isinstance(body, dict):
        return {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
    touched: Obj = {}
    for op in body if isinstance(body, list) else []:
        path = op.get("path") if isinstance(op, dict) else None
        if not isinstance(path, str) or not path.startswith("/"):
            continue
        node = touched
        for part in path.split("/")[1:]:
            if part.isdigit() or part == "-":
                break
            node = node.setdefault(part.replace("~1", "/").replace("~0", "~"), {})
    return touched


class Api:
    """Create/get/list/update/patch/delete for every registered type (one implementation)."""

    def __init__(self, store: Store, dispatcher: Dispatcher, clock: Callable[[], float] = time.time,
                 schema_of: Callable[[ResourceType], Obj | None] = lambda rt: None) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.clock = clock
        #: A custom resource's openAPIV3Schema (from its CRD), checked on every write.
        self.schema_of = schema_of

    # --- helpers ----------------------------------------------------------------------------
    def _namespace_labels(self, rt: ResourceType, namespace: str) -> dict[str, str] | None:
        if not rt.namespaced:
            return None
        ns = self.store.get(NAMESPACES, "", namespace)  # type: ignore[arg-type]
        return ((ns or {}).get("metadata") or {}).get("labels") or {}

    def _admit(self, a: Attributes, mutating: bool) -> Obj | None:
        labels = self._namespace_labels(a.rt, a.namespace)
        return self.dispatcher.run(a, mutating, labels)

    def _check_body(self, rt: ResourceType, body: Any, namespace: str) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format - accepted media types include: "
                              "application/json, application/yaml")
        if body.get("kind") and body["kind"] != rt.kind:
            raise bad_request(f"the API version in the data ({body.get('apiVersion')}) does not match the expected "
                              f"API version ({rt.api_version})" if body.get("apiVersion") != rt.api_version else
                              f"the kind in the data ({body['kind']}) does not match the expected kind ({rt.kind})")
        if body.get("apiVersion") and body["apiVersion"] != rt.api_version:
            raise bad_request(f"the API version in the data ({body['apiVersion']}) does not match the expected API "
                              f"version ({rt.api_version})")
        obj = copy.deepcopy(body)
        meta = _meta(obj)
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return obj

    def _validate(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        causes = validation.validate(rt, obj)
        if rt.custom:
            causes += validation.validate_custom(obj, self.schema_of(rt))
        if old is not None and rt.kind == "Pod" and rt.group == "":
            causes += validation.validate_pod_update(obj, old)
        if causes:
            raise invalid(rt.group, rt.kind, _meta(obj).get("name", ""), causes)

    def _record_manager(self, rt: ResourceType, obj: Obj, manager: str, operation: str, body: Any,
                        subresource: str = "") -> None:
        if not manager:
            return
        entries = [e for e in _meta(obj).get("managedFields") or []
                   if not (e.get("manager") == manager and e.get("operation") == operation)]
        entry = {"manager": manager, "operation": operation, "apiVersion": rt.api_version,
                 "time": rfc3339(self.clock()), "fieldsType": "FieldsV1",
                 "fieldsV1": _fields_v1(_touched(body))}
        if subresource:
            entry["subresource"] = subresource
        entries.append(entry)
        _meta(obj)["managedFields"] = entries

    def _check_namespace_open(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.get(NAMESPACES, "", namespace)  # type: ignore[arg-type]
        if ns is None:
            raise not_found("", "namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            qualified = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
            raise ApiError(403, "Forbidden", f'{qualified} "{name}" is forbidden: unable to create new content in '
                           f"namespace {namespace} because it is being terminated",
                           {"name": name, "group": rt.group, "kind": rt.plural,
                            "causes": [{"reason": "NamespaceTerminating", "message": f"namespace {namespace} is "
                                        "being terminated", "field": "metadata.namespace"}]})

    # --- verbs ------------------------------------------------------------------------------
    def create(self, rt: ResourceType, namespace: str, body: Any, req: Request) -> Obj:
        obj = self._check_body(rt, body, namespace)
        meta = _meta(obj)
        for f in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation",
                  "deletionGracePeriodSeconds"):
            meta.pop(f, None)
        apply_defaults(rt, obj)
        self._check_namespace_open(rt, namespace, meta.get("name") or meta.get("generateName", ""))
        a = Attributes(rt, "", "CREATE", namespace if rt.namespaced else "", meta.get("name", ""), obj, None,
                       req.user, req.dry_run, {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1",
                                               **({"fieldManager": req.field_manager} if req.field_manager else {})},
                       req.warnings)
        obj = self._admit(a, mutating=True) or obj
        apply_defaults(rt, obj)
        meta = _meta(obj)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choice(GENERATE_ALPHABET) for _ in range(5))
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(self.clock())
        if rt.generation:
            meta["generation"] = 1
        reset_status_on_create(rt, obj)
        self._record_manager(rt, obj, req.field_manager, "Update", body)
        self._validate(rt, obj, None)
        a.obj, a.name = obj, meta["name"]
        self._admit(a, mutating=False)
        if req.dry_run:
            if self.store.get(rt, namespace, meta["name"]) is not None:
                from localkube.errors import already_exists
                raise already_exists(rt.group, rt.plural, meta["name"])
            return obj
        return self.store.create(rt, obj)

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        return self.store.require(rt, namespace, name)

    def list(self, rt: ResourceType, namespace: str | None, label_selector: str | None,
             field_selector: str | None, limit: int | None = None, continue_token: str | None = None) -> Obj:
        reqs = parse_label_selector(label_selector)
        freqs = parse_field_selector(field_selector, FIELD_SELECTORS.get(rt.kind, ()))
        items, rv = self.store.list(rt, namespace)
        items = [o for o in items if labels_match(reqs, o["metadata"].get("labels")) and fields_match(freqs, o)]
        list_meta: Obj = {"resourceVersion": str(rv)}
        if continue_token:
            try:
                state = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start = tuple(state["start"])
                rv = state["rv"]
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid: invalid continue token")
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
            list_meta["resourceVersion"] = str(rv)
        if limit and limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            token = {"rv": int(list_meta["resourceVersion"]), "start": [last.get("namespace", ""), last["name"]]}
            list_meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            list_meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": list_meta, "items": items}

    def update(self, rt: ResourceType, namespace: str, name: str, body: Any, req: Request,
               subresource: str = "", _raw_body: Any = None) -> Obj:
        new = self._check_body(rt, body, namespace)
        meta = _meta(new)
        if meta.get("name") and meta["name"] != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        meta["name"] = name
        old = self.store.require(rt, namespace, name)
        old_meta = old["metadata"]
        want_rv = meta.get("resourceVersion") or old_meta["resourceVersion"]
        if want_rv != old_meta["resourceVersion"]:
            raise conflict(rt.group, rt.plural, name, "the object has been modified; please apply your changes to "
                           "the latest version and try again")
        if subresource == "status":
            new = _status_update(rt, new, old)
        elif rt.status_subresource:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta = _meta(new)
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if f in old_meta:
                meta[f] = old_meta[f]
            else:
                meta.pop(f, None)
        if "managedFields" not in meta and old_meta.get("managedFields"):
            meta["managedFields"] = old_meta["managedFields"]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        apply_defaults(rt, new)
        a = Attributes(rt, subresource, "UPDATE", namespace if rt.namespaced else "", name, new, old, req.user,
                       req.dry_run, {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1",
                                     **({"fieldManager": req.field_manager} if req.field_manager else {})},
                       req.warnings)
        new = self._admit(a, mutating=True) or new
        apply_defaults(rt, new)
        meta = _meta(new)
        for f in ("uid", "creationTimestamp", "name", "namespace"):
            if f in old_meta:
                meta[f] = old_meta[f]
        if rt.generation and _spec_part(new) != _spec_part(old):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        self._record_manager(rt, new, req.field_manager, "Update", _raw_body if _raw_body is not None else body,
                             subresource)
        self._validate(rt, new, old)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise invalid(rt.group, rt.kind, name, [validation.forbidden(
                    "metadata.finalizers", f"no new finalizers can be added if the object is being deleted, found "
                    f"new finalizers {json.dumps(sorted(added))}")])
        a.obj = new
        self._admit(a, mutating=False)
        if _without_managed(new) == _without_managed(old):
            return old  # a no-op write keeps the resourceVersion, as upstream does
        if req.dry_run:
            return new
        return self.store.update(rt, new, old_meta["resourceVersion"])

    def patch(self, rt: ResourceType, namespace: str, name: str, content_type: str, raw: bytes, req: Request,
              subresource: str = "") -> Obj:
        ctype = content_type.split(";")[0].strip().lower()
        if ctype not in PATCH_TYPES:
            raise ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                           f'accepted media types include: {", ".join(PATCH_TYPES)}')
        try:
            patch = yaml.safe_load(raw) if ctype == "application/apply-patch+yaml" else json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"error decoding patch: {exc}")
        if ctype == "application/apply-patch+yaml":
            if not req.field_manager:
                raise bad_request("PATCH, application/apply-patch+yaml requires fieldManager")
            if self.store.get(rt, namespace, name) is None and not subresource:
                body = copy.deepcopy(patch) if isinstance(patch, dict) else patch
                if isinstance(body, dict):
                    _meta(body).setdefault("name", name)
                created = self.create(rt, namespace, body, Request(req.user, req.dry_run, "", False, req.warnings))
                self._record_manager(rt, created, req.field_manager, "Apply", patch)
                if req.dry_run:
                    return created
                return self.store.update(rt, created, created["metadata"]["resourceVersion"])
        for _attempt in range(20):
            old = self.store.require(rt, namespace, name)
            if ctype == "application/json-patch+json":
                patched = json_patch(old, patch)
            elif ctype == "application/merge-patch+json":
                patched = merge_patch(old, patch)
            else:
                if not isinstance(patch, dict):
                    raise bad_request("patch must be an object")
                patched = strategic_merge(old, patch)
            if not isinstance(patched, dict):
                raise bad_request("patch did not produce an object")
            pmeta = _meta(patched)
            if not pmeta.get("resourceVersion"):
                pmeta["resourceVersion"] = old["metadata"]["resourceVersion"]
            try:
                manager = req.field_manager
                sub = Request(req.user, req.dry_run, "" if ctype.endswith("apply-patch+yaml") else manager,
                              req.force, req.warnings)
                result = self.update(rt, namespace, name, patched, sub, subresource, _raw_body=patch)
                if ctype.endswith("apply-patch+yaml") and not req.dry_run:
                    self._record_manager(rt, result, manager, "Apply", patch)
                    result = self.store.update(rt, result, result["metadata"]["resourceVersion"])
                return result
            except ApiError as err:
                explicit_rv = isinstance(patch, dict) and (patch.get("metadata") or {}).get("resourceVersion")
                if err.reason != "Conflict" or explicit_rv or ctype == "application/json-patch+json" and any(
                        isinstance(o, dict) and o.get("op") == "test" for o in patch):
                    raise
        raise conflict(rt.group, rt.plural, name, "too many concurrent patches")

    def delete(self, rt: ResourceType, namespace: str, name: str, options: Obj | None, req: Request) -> Obj:
        options = options or {}
        old = self.store.require(rt, namespace, name)
        meta = old["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise conflict(rt.group, rt.plural, name, f"Precondition failed: UID in precondition: {pre['uid']}, UID "
                           f"in object meta: {meta['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise conflict(rt.group, rt.plural, name, f"Precondition failed: ResourceVersion in precondition: "
                           f"{pre['resourceVersion']}, ResourceVersion in object meta: {meta['resourceVersion']}")
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is True:
            policy = "Orphan"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise invalid(rt.group, rt.kind, name, [validation.unsupported(
                "propagationPolicy", policy, ("Foreground", "Background", "Orphan", "nil"))])
        a = Attributes(rt, "", "DELETE", namespace if rt.namespaced else "", name, None, old, req.user,
                       req.dry_run, {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1",
                                     **({"propagationPolicy": policy} if policy else {})}, req.warnings)
        self._admit(a, mutating=True)
        self._admit(a, mutating=False)
        if meta.get("deletionTimestamp"):
            return old
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        graceful = rt.kind == "Namespace" and rt.group == ""
        if finalizers or graceful:
            marked = copy.deepcopy(old)
            marked["metadata"]["deletionTimestamp"] = rfc3339(self.clock())
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            if finalizers:
                marked["metadata"]["finalizers"] = finalizers
            if graceful:
                marked["status"] = {"phase": "Terminating"}
            if req.dry_run:
                return marked
            return self.store.update(rt, marked, meta["resourceVersion"])
        if req.dry_run:
            return old
        gone = self.store.delete(rt, namespace, name, meta["resourceVersion"])
        if rt.kind in RETURNS_DELETED_OBJECT:
            return gone
        details = {"name": name, "kind": rt.plural, "uid": meta["uid"]}
        if rt.group:
            details["group"] = rt.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def delete_collection(self, rt: ResourceType, namespace: str | None, label_selector: str | None,
                          field_selector: str | None, options: Obj | None, req: Request) -> Obj:
        listed = self.list(rt, namespace, label_selector, field_selector)
        deleted = []
        for o in listed["items"]:
            try:
                deleted.append(self.delete(rt, o["metadata"].get("namespace", ""), o["metadata"]["name"], options,
                                           req))
            except ApiError as err:
                if err.code != 404:
                    raise
        listed["items"] = [d for d in deleted if d.get("kind") != "Status"]
        return listed
