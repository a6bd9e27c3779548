"""Batches of flow records (a POST body, blocks of a file) decoded in one typed call give exactly what
record-by-record parsing gives: the same flows, and for any batch that is not only good Hubble flows,
the same rejections with the same numbers."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.reconciler.core.types import SignalError
from netwarden.reconciler.signals.parse import flow_from_json, parse_flow_lines, parse_flow_records
from netwarden.reconciler.signals.streams import iter_line_blocks, split_lines
from tests.support.data import PAYLOADS

HUBBLE = [line for path in sorted((PAYLOADS / "hubble").glob("*.jsonl"))
          for line in path.read_bytes().splitlines() if line.strip()]
CALICO = (PAYLOADS / "calico/calico-enterprise_flows-log-file_deny_2022.jsonl").read_bytes().strip()
GOOD = b"\n".join(HUBBLE) + b"\n"


def outcome(parsed) -> tuple:  # noqa: ANN001
    return parsed.flows, [(n, e.reason, fmt) for n, e, fmt in parsed.rejected], parsed.formats


def record_by_record(block: bytes, first: int = 1) -> tuple:
    return outcome(parse_flow_records((n + first - 1, line) for n, line in split_lines(block)))


@pytest.mark.parametrize("block", [
    GOOD,
    GOOD.rstrip(b"\n"),                                   # no newline at the end
    GOOD + b"\n\n",                                       # blank lines
    GOOD.replace(b"\n", b"\r\n"),                         # CRLF
    GOOD + CALICO + b"\n",                                # mixed formats
    HUBBLE[0] + b" " + HUBBLE[1] + b"\n",                 # two objects on one line: bad-json
    HUBBLE[0][:40] + b"\n" + HUBBLE[0][40:] + b"\n",      # one object over two lines: two bad lines
    HUBBLE[0] + HUBBLE[1] + b"\n" + HUBBLE[2][:30] + b"\n" + HUBBLE[2][30:],
    GOOD + b'{"flow": {}}\n',                             # a Hubble line without IP
    GOOD + b"[1]\n{not json\n",
    HUBBLE[0].replace(b'"Summary"', b'"Summ\xffary"') + b"\n",   # bad UTF-8 in a field not read
    HUBBLE[0][:-1] + b', "note": "\\ud800"}\n',           # a lone surrogate in a field not read
], ids=range(12))
def test_a_block_parses_as_its_records_do(block: bytes) -> None:
    assert outcome(parse_flow_lines(block, 7)) == record_by_record(block, 7)


def test_good_hubble_blocks_take_the_typed_path_and_match_each_record() -> None:
    parsed = parse_flow_lines(GOOD)
    assert parsed.formats == {"hubble": len(HUBBLE)} and not parsed.rejected
    assert parsed.flows == [flow_from_json(line)[0] for line in HUBBLE]


def test_line_blocks_number_lines_and_skip_overlong_ones_without_keeping_them() -> None:
    long_line = b'{"flow": "' + b"x" * 8000 + b'"}'
    data = HUBBLE[0] + b"\n\n" + long_line + b"\n" + HUBBLE[1] + b"\n" + HUBBLE[2]
    blocks = list(iter_line_blocks(io.BytesIO(data), max_line=3000, chunk=1500))
    assert all(isinstance(b, SignalError) or len(b) <= 4500 for _, b in blocks)
    flows, errors = [], []
    for first, block in blocks:
        if isinstance(block, SignalError):
            errors.append((first, block.reason))
            continue
        parsed = parse_flow_lines(block, first, max_line=3000)
        flows += parsed.flows
        errors += [(n, e.reason) for n, e, _ in parsed.rejected]
    assert errors == [(3, "line-too-long")]
    assert flows == [flow_from_json(line)[0] for line in HUBBLE[:3]]


def test_a_json_array_body_and_its_lines_give_the_same_flows() -> None:
    from netwarden.reconciler.receivers import iter_raw_records
    from netwarden.reconciler.signals.parse import parse_flow_array

    body = json.dumps([json.loads(line) for line in HUBBLE]).encode()
    assert parse_flow_array(body, lambda: iter_raw_records(body)).flows == parse_flow_lines(GOOD).flows
    mixed = json.dumps([json.loads(HUBBLE[0]), 42, json.loads(CALICO)]).encode()
    parsed = parse_flow_array(mixed, lambda: iter_raw_records(mixed))
    assert [(n, e.reason) for n, e, _ in parsed.rejected] == [(1, "not-an-object")]
    assert parsed.formats == {"hubble": 1, "calico": 1}


# --- a Hubble line's addresses and endpoints are decoded once per distinct raw JSON --------------------

#: Where a mutation lands: the parts the bytes path keeps raw (and caches by their bytes), and around them.
RAW_PARTS = [("flow", "IP"), ("flow", "IP", "source"), ("flow", "IP", "destination"), ("flow", "source"),
             ("flow", "destination"), ("flow", "source", "labels"), ("flow", "source", "identity"),
             ("flow", "source", "pod_name"), ("flow", "source", "podName"), ("flow", "destination", "namespace"),
             ("flow", "destination", "labels"), ("IP",), ("source",)]
json_leaves = (st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=False, allow_infinity=False)
               | st.text(max_size=12) | st.sampled_from(["10.0.0.9", "", "k8s:app=x", "reserved:world", "ns"]))
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(["source", "labels", "namespace", "pod_name", "identity", "x"]),
                                             inner, max_size=4), max_leaves=12)
WRAPPED = next(line for line in HUBBLE if line.startswith(b'{"flow"') and b'"IP"' in line and b'"destination"' in line)


def dict_path(line: bytes) -> object:
    """What the dict parser makes of one line: the Flow, or the rejection's reason."""
    from netwarden.reconciler.signals.parse import parse_flow_any

    try:
        return parse_flow_any(json.loads(line))
    except SignalError as error:
        return error.reason


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(RAW_PARTS), json_values)
def test_raw_endpoints_give_what_the_dict_parser_gives_first_time_and_from_the_cache(path: tuple[str, ...],
                                                                                    value: object) -> None:
    record = json.loads(WRAPPED)
    target = record
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(target.get(key, {}), dict) else target
    target[path[-1]] = value
    line = json.dumps(record).encode()
    # The unchanged line written alike, so its raw parts are byte for byte those of the mutated one
    # where they agree; the mutated parts twice: decoded, then (when good) from the cache.
    lines = [line, json.dumps(json.loads(WRAPPED)).encode(), line]
    parsed = parse_flow_lines(b"\n".join(lines))
    got: dict[int, object] = {n: e.reason for n, e, _ in parsed.rejected}
    flows = iter(parsed.flows)
    for number in range(1, 4):
        if number not in got:
            got[number] = next(flows)
    assert [got[n] for n in range(1, 4)] == [dict_path(one) for one in lines]


@pytest.mark.parametrize("data", [b'{"a": "x"}', b'{"a": "\\n"}', b'{"a": "\\u00e9"}', b'{"a": "\\ud800"}',
                                  b'{"a": "\\uDBFF\\n"}', b'{"a": "\\\\"}', b'{"a": "\xc3\xa9\\ud9"}', b"\\", b"\\u"])
def test_clean_text_finds_a_surrogate_escape_as_a_search_for_it_does(data: bytes) -> None:
    from netwarden.reconciler.signals.parse import _SURROGATE_ESCAPE, clean_text

    assert clean_text(data) == (b"\\u" not in data or _SURROGATE_ESCAPE.search(data) is None)
