"""Kubernetes name and label-value rules, and deterministic shortening of values that break them."""

from __future__ import annotations

import functools
import hashlib
import re

MAX_LABEL_VALUE = 63
MAX_NAME = 253
# fullmatch, never `$`: Python's `$` also matches before a trailing newline, which the API refuses.
_LABEL_VALUE_RE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def is_valid_label_value(value: str) -> bool:
    return len(value) <= MAX_LABEL_VALUE and bool(_LABEL_VALUE_RE.fullmatch(value))


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS_LABEL_RE.fullmatch(value))


def short_hash(text: str, length: int = 10) -> str:
    # surrogatepass: a lone surrogate (possible in JSON) still hashes instead of raising.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


@functools.lru_cache(maxsize=8192)  # a pure function of short strings that repeat: every admission asks again
def fit_label_value(value: str, limit: int = MAX_LABEL_VALUE) -> str:
    """Make `value` a valid label value, deterministically.

    Valid values pass through unchanged. Anything else keeps a readable prefix and ends with a
    hash of the whole original, so two different long names never collide by truncation.
    """
    if len(value) <= limit and is_valid_label_value(value):
        return value
    digest = short_hash(value)
    cleaned = _INVALID_CHARS.sub("-", value)
    prefix = cleaned[: limit - len(digest) - 1].strip("-_.")
    return f"{prefix}-{digest}" if prefix else digest


def fit_object_name(value: str, limit: int = MAX_NAME) -> str:
    """Make a DNS-1123 subdomain object name (lowercase), hashing when too long or when cleaning it
    had to drop characters (empty or dash-edged parts between dots: "a..b", "a.-b")."""
    lowered = re.sub(r"[^a-z0-9.-]+", "-", value.lower()).strip("-.")
    cleaned = ".".join(part for part in (p.strip("-") for p in lowered.split(".")) if part)
    if len(cleaned) <= limit and cleaned == value:
        return value
    if len(cleaned) <= limit and cleaned and cleaned == lowered:
        return cleaned
    digest = short_hash(value)
    head = cleaned[: limit - len(digest) - 1].strip("-.")
    return f"{head}-{digest}" if head else digest
