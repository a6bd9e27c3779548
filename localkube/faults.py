"""Fault injection: make chosen requests fail, stall, or have their watch cut, on purpose."""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from localkube.errors import REASON_BY_CODE, ApiError


@dataclass
class Fault:
    """Applies to requests whose method (None = any) and path (regex, searched) match, `times` times (None = always)."""

    path_regex: str = ".*"
    method: str | None = None
    status: int | None = None
    times: int | None = 1
    retry_after: int | None = None
    delay: float = 0.0
    drop_watch_after: int | None = None
    message: str = ""
    id: int = 0
    hits: int = field(default=0)

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return re.search(self.path_regex, path) is not None

    def error(self) -> ApiError:
        code = int(self.status or 500)
        reason = REASON_BY_CODE.get(code, "InternalError")
        message = self.message or {
            429: "Too many requests, please try again later.",
            409: "Operation cannot be fulfilled: injected conflict",
            410: "too old resource version: injected",
            500: "Internal error occurred: injected fault",
        }.get(code, f"injected fault {code}")
        if code == 409:
            reason = "Conflict"
        err = ApiError(code, reason, message)
        if self.retry_after is not None or code == 429:
            seconds = int(self.retry_after if self.retry_after is not None else 1)
            err.details = {"retryAfterSeconds": seconds}
            err.headers["Retry-After"] = str(seconds)
        return err


class Faults:
    """The active fault list (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1

    def add(self, method: str | None = None, path_regex: str = ".*", status: int | None = None,
            times: int | None = 1, retry_after: int | None = None, delay: float = 0.0,
            drop_watch_after: int | None = None, message: str = "") -> Fault:
        re.compile(path_regex)
        with self._lock:
            fault = Fault(path_regex, method, status, times, retry_after, delay, drop_watch_after, message,
                          self._next_id)
            self._next_id += 1
            self._faults.append(fault)
            return fault

    def add_from_json(self, body: dict[str, Any]) -> Fault:
        allowed = {"method", "path_regex", "status", "times", "retry_after", "delay", "drop_watch_after", "message"}
        unknown = set(body) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return self.add(**body)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def take(self, method: str, path: str) -> Fault | None:
        """The first matching fault, consuming one of its uses."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None
