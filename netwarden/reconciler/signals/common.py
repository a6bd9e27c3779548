"""What every format module shares: timestamps, ports, protocols, labels, and turning a msgspec
validation failure into a SignalError with a bounded reason. Pure; no I/O.

The wire types are msgspec Structs that declare only the fields netwarden reads: a typed decode
skips the rest of a record in C instead of building a dict of all of it. A field whose old parser
accepted any JSON value (an enum read with a fallback) is typed `Any`, so the typed path rejects
exactly what the dict path always rejected, with the same reason.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, TypeVar

import msgspec

from netwarden.reconciler.core.types import SignalError

S = TypeVar("S", bound=msgspec.Struct)

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?(Z|z|[+-]\d{2}:?\d{2})$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: "YYYY-MM-DDTHH:MM:SS" already validated -> its epoch seconds (UTC records of one stream share it
#: for a whole second). Bounded: cleared when full.
_SECOND_CACHE: dict[str, float] = {}
_SECOND_CACHE_MAX = 4096


def parse_rfc3339(text: object) -> float:
    """RFC 3339 (nanoseconds allowed, which datetime.fromisoformat rejects on 3.10-) -> epoch seconds."""
    if type(text) is str and text[-1:] == "Z":
        base = _SECOND_CACHE.get(text[:19])
        if base is not None:
            fraction = text[19:-1]
            if not fraction:
                return base
            if fraction[0] == "." and 2 <= len(fraction) <= 13 and fraction[1:].isdecimal():
                # float(".000000001") is the double nearest the decimal, as int / 10**n is.
                return base + float(fraction)
    if not isinstance(text, str):
        raise SignalError("bad-timestamp", f"timestamp is not a string: {text!r:.80}")
    match = _RFC3339.match(text)
    if match is None:
        raise SignalError("bad-timestamp", f"not an RFC 3339 timestamp: {text!r:.80}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        if zone in ("Z", "z"):
            offset = timedelta(0)
        else:
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone(offset))
    except (ValueError, OverflowError) as err:
        raise SignalError("bad-timestamp", f"invalid timestamp {text!r:.80}: {err}") from None
    seconds = (moment - _EPOCH).total_seconds()
    if zone == "Z":
        if len(_SECOND_CACHE) >= _SECOND_CACHE_MAX:
            _SECOND_CACHE.clear()
        _SECOND_CACHE[text[:19]] = seconds
    if fraction:
        seconds += int(fraction) / 10 ** len(fraction)
    return seconds


def epoch(value: object) -> float:
    """Epoch seconds given as a JSON number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SignalError("bad-timestamp", f"epoch timestamp is not a number: {value!r:.80}")
    try:
        out = float(value)
    except OverflowError:
        raise SignalError("bad-timestamp", "epoch timestamp out of range") from None
    if not math.isfinite(out) or out < 0 or out > 1e11:
        raise SignalError("bad-timestamp", f"epoch timestamp out of range: {value!r:.80}")
    return out


def epoch_ns(value: int) -> float:
    """Integer nanoseconds since the epoch (Falco evt.time)."""
    if not 0 <= value < 10**20:
        raise SignalError("bad-timestamp", f"epoch nanoseconds out of range: {value!r:.40}")
    return value / 1e9


def time_any(value: object) -> float:
    """RFC 3339 string or epoch seconds."""
    if isinstance(value, str):
        return parse_rfc3339(value)
    return epoch(value)


def obj(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SignalError(f"bad-field:{path}", f"{path} is not an object")
    return value


def opt_obj(parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = parent.get(key)
    return {} if value is None else obj(value, path)


def opt_str(value: object, path: str, *, placeholders: tuple[str, ...] = ("",)) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SignalError(f"bad-field:{path}", f"{path} is not a string")
    return None if value in placeholders else value


def port(value: object) -> int | None:
    """A destination port; absent, null or 0 (proto3 omits zero) mean none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise SignalError("bad-port", f"not a port number: {value!r:.80}")
    return value or None


def count(value: object, path: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SignalError(f"bad-field:{path}", f"{path} is not a non-negative integer")
    return value


def flag(value: object, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise SignalError(f"bad-field:{path}", f"{path} is not a boolean")
    return value


def hashable(value: object) -> object:
    """Enum-ish JSON values used as dict keys; lists/dicts (never valid there) become None."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    return None


def require_dict_root(value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SignalError("not-an-object", f"record is a {type(value).__name__}, not a JSON object")
    return value


def key_value_labels(items: object, path: str, strip_prefix: str | None = None) -> dict[str, str]:
    """["app=web", ...] -> {"app": "web"}; with strip_prefix only "<prefix>:"-sourced labels are kept."""
    if items is None:
        return {}
    if not isinstance(items, list):
        raise SignalError(f"bad-field:{path}", f"{path} is not a list")
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise SignalError(f"bad-field:{path}", f"{path} has a non-string entry")
        if strip_prefix is not None:
            source, sep, rest = item.partition(":")
            if not sep or source != strip_prefix:
                continue
            item = rest
        key, _, value = item.partition("=")
        out[key] = value
    return out


_IP_PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
_PROTOCOL_NAMES = {"icmp": "ICMP", "tcp": "TCP", "udp": "UDP", "sctp": "SCTP", "icmp6": "ICMPv6", "icmpv6": "ICMPv6"}


def protocol(value: object, path: str) -> str:
    """A protocol name (any case) or IP protocol number -> TCP, UDP, SCTP, ICMP, ICMPv6 (or the number)."""
    if isinstance(value, bool) or value is None:
        raise SignalError(f"bad-field:{path}", f"{path} is not a protocol")
    if isinstance(value, int):
        return _IP_PROTOCOLS.get(value, str(value))
    if isinstance(value, str) and value:
        if value.isdigit():
            return _IP_PROTOCOLS.get(int(value), value)
        return _PROTOCOL_NAMES.get(value.lower(), value.upper())
    raise SignalError(f"bad-field:{path}", f"{path} is not a protocol")


# --- msgspec -> SignalError ----------------------------------------------------------------------

_AT = " - at `$"
_INDEX = re.compile(r"\[[^\]]*\]")


def validation_error(err: msgspec.ValidationError, renames: Mapping[str, str] = {}, prefix: str = "") -> SignalError:
    """A typed decode's failure as the dict parser would have said it: the root not an object ->
    not-an-object; a field of the wrong type -> bad-field:<path> (or the reason `renames` gives the
    path, e.g. a port -> bad-port). `prefix` is put before paths (a bare Hubble flow is `flow.`)."""
    text = str(err)
    head, at, where = text.partition(_AT)
    if not at or where in ("`", ""):
        return SignalError("not-an-object", f"record is not a JSON object ({head})")
    path = _INDEX.sub("", where.rstrip("`")).lstrip(".")
    if prefix and not path.startswith(prefix):
        path = prefix + path
    reason = renames.get(path, f"bad-field:{path}")
    return SignalError(reason, f"{path}: {head}")


def convert(value: object, kind: type[S], renames: Mapping[str, str] = {}, prefix: str = "") -> S:
    """A decoded JSON value -> the format's Struct, or the SignalError the dict parser would raise."""
    if not isinstance(value, dict):
        raise SignalError("not-an-object", f"record is a {type(value).__name__}, not a JSON object")
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as err:
        raise validation_error(err, renames, prefix) from None
