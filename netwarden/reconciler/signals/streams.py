"""Reading signal streams: JSON lines from files, stdin or HTTP bodies, and counting what was
accepted and rejected (by format and reason) for the signals metrics.

Thin: the only I/O is reading the file object it is given; parsing stays in parse.py.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Callable, Iterable, Iterator, TypeVar

from netwarden.model import names
from netwarden.reconciler.core.types import SignalError

#: Longest line accepted (bytes or characters); longer lines are skipped whole, not buffered.
MAX_LINE = 1 << 20

T = TypeVar("T")

#: The reasons that mean "could not even be decoded" (as opposed to a decoded record of the wrong shape).
DECODE_REASONS = frozenset({"bad-json", "bad-encoding", "line-too-long"})
#: A JSON escape of a UTF-16 surrogate; only bodies containing one pay for the full surrogate check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode_json(text: str | bytes, what: str) -> object:
    """One JSON document, or a SignalError that says why not (bad UTF-8, bad JSON, nesting too deep,
    a lone surrogate: a string Python holds but no API call or log can encode)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SignalError("bad-encoding", f"{what} is not UTF-8 ({err.reason} at byte {err.start})") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise SignalError("bad-json", f"{what}: JSON nested too deeply") from None
    except ValueError as err:
        raise SignalError("bad-json", f"{what}: {err}") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise SignalError("bad-encoding", f"{what} holds a lone UTF-16 surrogate (\\ud800-\\udfff)") from None
    return value


def _read_line(fileobj: IO[str] | IO[bytes], limit: int) -> tuple[str | bytes, bool]:
    """One physical line, at most `limit` units kept; True when the line was longer and cut."""
    line = fileobj.readline(limit + 1)
    if len(line) <= limit or line[-1:] in ("\n", b"\n"):
        return line, False
    # Too long: drain the rest of this line in bounded chunks without keeping it.
    while True:
        chunk = fileobj.readline(limit)
        if not chunk or chunk[-1:] in ("\n", b"\n"):
            return line, True


def iter_json_lines(
    fileobj: IO[str] | IO[bytes], *, max_line: int = MAX_LINE
) -> Iterator[tuple[int, dict | SignalError]]:
    """(line number, decoded object or SignalError) per non-blank line; never raises on bad data."""
    lineno = 0
    while True:
        line, too_long = _read_line(fileobj, max_line)
        if not line:
            return
        lineno += 1
        if too_long:
            yield lineno, SignalError("line-too-long", f"line {lineno} is longer than {max_line}")
            continue
        if not line.strip():
            continue
        try:
            value = decode_json(line, f"line {lineno}")
        except SignalError as err:
            yield lineno, err
            continue
        if not isinstance(value, dict):
            yield lineno, SignalError("not-an-object", f"line {lineno} is a {type(value).__name__}")
            continue
        yield lineno, value


#: Bytes read at a time by `iter_lines` (lines are cut from the chunk; a partial one carries over).
CHUNK = 1 << 20


def iter_lines(fileobj: IO[bytes], *, max_line: int = MAX_LINE, chunk: int = CHUNK) -> Iterator[tuple[int, bytes | SignalError]]:
    """(line number, the line's bytes or SignalError("line-too-long")) per non-blank line, read in
    chunks (one readline per line costs more than parsing a Hubble record). A line longer than
    `max_line` is skipped whole without being kept; memory stays within chunk + max_line."""
    lineno = 0
    carry = b""
    skipping = False  # inside a line already reported too long
    # read1: what is there now (a live pipe is not held back until a whole chunk arrives).
    read = getattr(fileobj, "read1", fileobj.read)
    while True:
        data = read(chunk)
        if not data:
            break
        lines = (carry + data).split(b"\n") if carry else data.split(b"\n")
        carry = lines.pop()
        for line in lines:
            lineno += 1
            if skipping:
                skipping = False
                continue
            if len(line) > max_line:
                yield lineno, SignalError("line-too-long", f"line {lineno} is longer than {max_line}")
            elif line.strip():
                yield lineno, line
        if len(carry) > max_line:
            if not skipping:
                yield lineno + 1, SignalError("line-too-long", f"line {lineno + 1} is longer than {max_line}")
            skipping = True
            carry = b""
    if carry and not skipping:
        lineno += 1
        if len(carry) > max_line:
            yield lineno, SignalError("line-too-long", f"line {lineno} is longer than {max_line}")
        elif carry.strip():
            yield lineno, carry


def iter_line_blocks(fileobj: IO[bytes], *, max_line: int = MAX_LINE,
                     chunk: int = CHUNK) -> Iterator[tuple[int, bytes | SignalError]]:
    """Whole lines a chunk at a time: (number of the block's first line, the lines' bytes), or
    (number, SignalError("line-too-long")) for a line that outgrew `max_line` before it ended (skipped
    whole, not kept). A block is at most chunk + max_line bytes; parse.parse_flow_lines reads it."""
    lineno = 1  # the number of the next line
    carry = b""
    skipping = False  # the next bytes continue a line already reported too long
    read = getattr(fileobj, "read1", fileobj.read)
    while True:
        data = read(chunk)
        if not data:
            break
        if carry:
            data = carry + data
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
        else:
            block, carry = data[:cut + 1], data[cut + 1:]
            if skipping:
                block = block[block.find(b"\n") + 1:]
                lineno += 1
                skipping = False
            if block:
                yield lineno, block
                lineno += block.count(b"\n")
        if len(carry) > max_line:
            if not skipping:
                yield lineno, SignalError("line-too-long", f"line {lineno} is longer than {max_line}")
            skipping = True
            carry = b""
    if carry and not skipping:
        yield lineno, carry


def split_lines(body: bytes, *, max_line: int = MAX_LINE) -> Iterator[tuple[int, bytes | SignalError]]:
    """`iter_lines` over a body already in memory."""
    for lineno, line in enumerate(body.split(b"\n"), 1):
        if len(line) > max_line:
            yield lineno, SignalError("line-too-long", f"line {lineno} is longer than {max_line}")
        elif line.strip():
            yield lineno, line


@dataclass
class SignalCounters:
    """Accepted records per source format, rejected per (format, reason). Adapters own one."""

    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record_ok(self, source_format: str, count: int = 1) -> None:
        self.accepted[source_format] += count

    def record_error(self, source_format: str, error: SignalError) -> None:
        self.rejected[(source_format, error.reason)] += 1

    def samples(self) -> list[tuple[str, dict[str, str], int]]:
        """(metric name, labels, value) for every counter; what a Prometheus collector yields."""
        out = [(names.METRIC_SIGNALS, {"format": fmt}, n) for fmt, n in sorted(self.accepted.items())]
        out += [
            (names.METRIC_SIGNALS_REJECTED, {"format": fmt, "reason": reason}, n)
            for (fmt, reason), n in sorted(self.rejected.items())
        ]
        return out


class SignalCountersCollector:
    """prometheus_client collector over a SignalCounters: `REGISTRY.register(SignalCountersCollector(c))`."""

    def __init__(self, counters: SignalCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[object]:
        from prometheus_client.core import CounterMetricFamily

        accepted = CounterMetricFamily(
            names.METRIC_SIGNALS.removesuffix("_total"), "Signal records accepted, by format", labels=["format"]
        )
        rejected = CounterMetricFamily(
            names.METRIC_SIGNALS_REJECTED.removesuffix("_total"),
            "Signal records rejected, by format and reason",
            labels=["format", "reason"],
        )
        for name, labels, value in self.counters.samples():
            family = accepted if name == names.METRIC_SIGNALS else rejected
            family.add_metric(list(labels.values()), value)
        yield accepted
        yield rejected


def iter_parsed(
    records: Iterable[tuple[int, dict | SignalError]],
    parse: Callable[[object], T],
    source_format: str,
    counters: SignalCounters | None = None,
) -> Iterator[tuple[int, T | SignalError]]:
    """Apply a parser from parse.py to iter_json_lines output, counting as it goes."""
    for lineno, record in records:
        result: T | SignalError
        if isinstance(record, SignalError):
            result = record
        else:
            try:
                result = parse(record)
            except SignalError as err:
                result = err
        if counters is not None:
            if isinstance(result, SignalError):
                counters.record_error(source_format, result)
            else:
                counters.record_ok(source_format)
        yield lineno, result
