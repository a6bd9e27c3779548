"""Bounded history of a policy's previous specs, so any change can be rolled back: the one home of a policy's past.

Kept on the policy itself in the `netwarden.io/history` annotation as compact JSON. Bounded twice:
by entry count and by bytes (all annotations of an object share a 256 KiB budget), oldest dropped
first. Revisions are netwarden's own monotonic counter (`netwarden.io/revision`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from netwarden.model import names
from netwarden.model.errors import HistoryError

#: Version of the annotation's JSON layout.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class HistoryEntry:
    """A spec the policy had at `revision`, and why it was replaced."""

    revision: int
    spec: Mapping[str, Any]
    step: str
    reason: str
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "spec": self.spec, "step": self.step, "reason": self.reason, "time": self.time}

    @classmethod
    def from_dict(cls, data: Any) -> "HistoryEntry":
        if not isinstance(data, Mapping):
            raise HistoryError("history entry is not an object")
        revision, spec = data.get("revision"), data.get("spec")
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise HistoryError(f"history entry has a bad revision: {revision!r}")
        if not isinstance(spec, Mapping):
            raise HistoryError(f"history entry {revision} has no spec object")
        time = data.get("time", 0.0)
        if isinstance(time, bool) or not isinstance(time, (int, float)):
            raise HistoryError(f"history entry {revision} has a bad time")
        return cls(revision, spec, str(data.get("step", "")), str(data.get("reason", "")), float(time))


@dataclass(frozen=True)
class PolicyHistory:
    """Previous specs of one policy, oldest first, plus the revision the policy is at now."""

    entries: tuple[HistoryEntry, ...] = ()
    current_revision: int = 0
    max_entries: int = 10
    max_bytes: int = 64 * 1024

    def push(self, spec: Mapping[str, Any], step: str, reason: str, time: float) -> "PolicyHistory":
        """Record the spec being replaced (at the current revision); the policy moves to the next one."""
        entry = HistoryEntry(self.current_revision, _plain(spec), step, reason, time)
        kept = (*self.entries, entry)[-self.max_entries :]
        return _fit(PolicyHistory(kept, self.current_revision + 1, self.max_entries, self.max_bytes))

    def previous(self, revision: int | None = None) -> HistoryEntry | None:
        """The most recent previous spec, or the one at `revision` (None when not kept)."""
        if revision is None:
            return self.entries[-1] if self.entries else None
        for entry in self.entries:
            if entry.revision == revision:
                return entry
        return None

    def pop(self) -> "PolicyHistory":
        """History after rolling back to `previous()`: that entry is the current spec again."""
        if not self.entries:
            return self
        return PolicyHistory(self.entries[:-1], self.current_revision + 1, self.max_entries, self.max_bytes)

    def revisions(self) -> tuple[int, ...]:
        return tuple(e.revision for e in self.entries)

    def to_annotation(self) -> str:
        return _encode(self.entries, self.current_revision)

    @classmethod
    def from_annotation(
        cls, text: str | None, *, current_revision: int = 0, max_entries: int = 10, max_bytes: int = 64 * 1024
    ) -> "PolicyHistory":
        """Parse the annotation; an absent one is an empty history, a malformed one an error."""
        if not text:
            return cls((), current_revision, max_entries, max_bytes)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"{names.ANNOTATION_HISTORY} is not JSON: {exc.msg}") from None
        if not isinstance(data, Mapping) or data.get("v") != FORMAT_VERSION or not isinstance(data.get("entries"), list):
            raise HistoryError(f"{names.ANNOTATION_HISTORY} is not a netwarden history (v{FORMAT_VERSION})")
        entries = tuple(HistoryEntry.from_dict(e) for e in data["entries"])
        if any(b.revision <= a.revision for a, b in zip(entries, entries[1:])):
            raise HistoryError("history revisions are not increasing")
        current = data.get("current", current_revision)
        if isinstance(current, bool) or not isinstance(current, int):
            raise HistoryError("history has a bad current revision")
        current = max(current, current_revision, entries[-1].revision + 1 if entries else 0)
        return _fit(cls(entries[-max_entries:], current, max_entries, max_bytes))


def _encode(entries: tuple[HistoryEntry, ...], current: int) -> str:
    return json.dumps(
        {"v": FORMAT_VERSION, "current": current, "entries": [e.to_dict() for e in entries]},
        separators=(",", ":"),
        sort_keys=True,
    )


def _fit(history: PolicyHistory) -> PolicyHistory:
    """Drop the oldest entries until the annotation fits the byte budget."""
    entries = history.entries
    while entries and len(_encode(entries, history.current_revision).encode()) > history.max_bytes:
        entries = entries[1:]
    if entries is history.entries:
        return history
    return PolicyHistory(entries, history.current_revision, history.max_entries, history.max_bytes)


def _plain(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """A JSON-safe deep copy (the caller may keep mutating its dict)."""
    return json.loads(json.dumps(spec, sort_keys=True))
