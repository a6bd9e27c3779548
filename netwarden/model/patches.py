"""JSON Patch (RFC 6902), one home: the operations netwarden sends, built on the `jsonpatch` package.

The webhook's label patch and the CA-bundle injection's guarded patch build their operations here;
`apply` is the same library's application (what the tests check a patch against). Paths are RFC 6901
pointers: a "/" inside a key is written "~1" and a "~" is "~0" (label keys like netwarden.io/identity).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import jsonpatch
from jsonpointer import escape

from netwarden.model.wire_admission import JSONPatchOp


def pointer(*parts: str | int) -> str:
    """The RFC 6901 pointer to `parts` (each escaped)."""
    return "".join("/" + escape(str(part)) for part in parts)


def add(parts: Iterable[str | int], value: Any) -> JSONPatchOp:
    """Add (on an existing object member: replace, RFC 6902 4.1)."""
    return {"op": "add", "path": pointer(*parts), "value": value}


def remove(parts: Iterable[str | int]) -> JSONPatchOp:
    return {"op": "remove", "path": pointer(*parts)}


def test(parts: Iterable[str | int], value: Any) -> JSONPatchOp:
    """Guard: the patch fails (422) unless the value at `parts` is `value`."""
    return {"op": "test", "path": pointer(*parts), "value": value}


def apply(document: Mapping[str, Any], operations: Iterable[JSONPatchOp]) -> dict[str, Any]:
    """`document` with `operations` applied (a copy), as the API server applies them."""
    return jsonpatch.apply_patch(dict(document), list(operations), in_place=False)
