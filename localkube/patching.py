"""PATCH bodies: RFC 6902 JSON Patch, RFC 7386 merge patch, and Kubernetes strategic merge patch.

Strategic merge knows the patchMergeKey of the list fields netwarden touches (containers by name,
ports by containerPort/port, ownerReferences by uid, ...); other lists are replaced, as upstream
does for lists without a patch strategy.
"""

from __future__ import annotations

import copy
from typing import Any

from localkube.errors import ApiError, bad_request

#: list field name -> merge key (None = primitive list merged as a set)
MERGE_KEYS: dict[str, str | None] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "finalizers": None,
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "secrets": "name",
}


def _merge_key_for(field: str, items: list[Any]) -> str | None | bool:
    """The merge key for a list field, or False when the list is simply replaced."""
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict) and "$patch" not in i), None) or {}
        return "containerPort" if "containerPort" in sample else "port"
    if field in MERGE_KEYS:
        return MERGE_KEYS[field]
    return False


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _resolve(doc: Any, pointer: str) -> tuple[Any, str | int]:
    if not pointer.startswith("/"):
        raise bad_request(f"invalid JSON pointer: {pointer!r}")
    parts = [_unescape(p) for p in pointer.split("/")[1:]]
    cur = doc
    for part in parts[:-1]:
        if isinstance(cur, list):
            cur = cur[int(part)]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                           f"doc is missing path: \"{pointer}\"")
    last: str | int = parts[-1]
    if isinstance(cur, list):
        last = len(cur) if last == "-" else int(last)
    return cur, last


def json_patch(doc: dict[str, Any], ops: Any) -> dict[str, Any]:
    """Apply an RFC 6902 patch; a failed `test` or missing path is an error like upstream."""
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    try:
        for op in ops:
            kind, path = op.get("op"), op.get("path", "")
            if path == "":
                if kind in ("add", "replace"):
                    doc = copy.deepcopy(op["value"])
                    continue
            if kind in ("move", "copy"):
                src_parent, src_key = _resolve(doc, op["from"])
                value = src_parent[src_key]
                if kind == "move":
                    del src_parent[src_key]
                else:
                    value = copy.deepcopy(value)
                parent, key = _resolve(doc, path)
                _add(parent, key, value)
                continue
            parent, key = _resolve(doc, path)
            if kind == "add":
                _add(parent, key, copy.deepcopy(op["value"]))
            elif kind == "remove":
                _missing_guard(parent, key, path)
                del parent[key]
            elif kind == "replace":
                _missing_guard(parent, key, path)
                parent[key] = copy.deepcopy(op["value"])
            elif kind == "test":
                _missing_guard(parent, key, path)
                if parent[key] != op["value"]:
                    raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our "
                                   f"request: testing value {path} failed")
            else:
                raise bad_request(f"Unexpected kind: {kind}")
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {exc}")
    return doc


def _missing_guard(parent: Any, key: str | int, path: str) -> None:
    if isinstance(parent, list):
        if not isinstance(key, int) or key >= len(parent):
            raise IndexError(f"index out of range for {path}")
    elif key not in parent:
        raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                       f"doc is missing key: {path}")


def _add(parent: Any, key: str | int, value: Any) -> None:
    if isinstance(parent, list):
        parent.insert(int(key), value)
    else:
        parent[key] = value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def strategic_merge(target: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge patch: like merge patch, but keyed lists merge item by item."""
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        if patch.get("$patch") == "delete":
            return None
        result = copy.deepcopy(target) if isinstance(target, dict) else {}
        for k, v in patch.items():
            if k.startswith("$deleteFromPrimitiveList/"):
                name = k.split("/", 1)[1]
                result[name] = [x for x in result.get(name) or [] if x not in (v or [])]
                continue
            if k.startswith("$"):
                continue
            if v is None:
                result.pop(k, None)
                continue
            merged = strategic_merge(result.get(k), v, k)
            if merged is None and isinstance(v, dict):
                result.pop(k, None)
            else:
                result[k] = merged
        return result
    if isinstance(patch, list):
        key = _merge_key_for(field, patch)
        if key is False or not isinstance(target, list):
            if key is not False:
                return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
            return copy.deepcopy(patch)
        if key is None:
            out = []
            for item in list(target) + list(patch):
                if item not in out:
                    out.append(copy.deepcopy(item))
            return _upstream_order(out, list(patch), list(target), lambda x: x)
        if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
            return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
        deleted = {i.get(key) for i in patch if isinstance(i, dict) and i.get("$patch") == "delete"}
        original = [copy.deepcopy(i) for i in target if not (isinstance(i, dict) and i.get(key) in deleted)]
        plain = [i for i in patch if isinstance(i, dict) and "$patch" not in i]
        out = [copy.deepcopy(i) for i in original]
        for item in plain:
            idx = next((n for n, cur in enumerate(out) if isinstance(cur, dict) and cur.get(key) == item.get(key)),
                       None)
            if idx is None:
                out.append(strategic_merge({}, item, ""))
            else:
                out[idx] = strategic_merge(out[idx], item, "")
        return _upstream_order(out, plain, original, lambda x: x.get(key) if isinstance(x, dict) else x)
    return copy.deepcopy(patch)


def _upstream_order(merged: list[Any], patch: list[Any], original: list[Any], ident: Any) -> list[Any]:
    """apimachinery's normalizeElementOrder: items named in the patch keep the patch's order, server-only
    items keep the live order, and the two interleave where the live order relates them (so a new item
    the server has never seen goes first: ["a"] patched with ["b"] is ["b", "a"])."""
    patch_ids = [ident(p) for p in patch]
    server_ids = [ident(o) for o in original]

    def index(ids: list[Any], item: Any) -> int:
        return ids.index(ident(item)) if ident(item) in ids else -1

    def by(ids: list[Any], items: list[Any]) -> list[Any]:
        found = sorted((i for i in items if index(ids, i) >= 0), key=lambda i: index(ids, i))
        return found + [i for i in items if index(ids, i) < 0]

    right = by(patch_ids, [m for m in merged if ident(m) in patch_ids])
    left = by(server_ids, [m for m in merged if ident(m) not in patch_ids])
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i < len(left) and j < len(right):
            li, ri = index(server_ids, left[i]), index(server_ids, right[j])
            take_left = li >= 0 and ri >= 0 and li < ri
        else:
            take_left = i < len(left)
        if take_left:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    return out
