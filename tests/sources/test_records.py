"""gRPC messages become the same Flow as the JSON the same source exports (real payloads)."""

from __future__ import annotations

import json

import msgspec
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from netwarden.reconciler.core.types import SignalError
from netwarden.reconciler.signals.goldmane import parse_goldmane_flow
from netwarden.reconciler.signals.hubble import parse_hubble_line
from netwarden.reconciler.sources import records
from netwarden.reconciler.sources.proto import flow_pb2, observer_pb2
from netwarden.tools.replay_server import hubble_response
from tests.sources.goldmane_data import as_goldmane, whisker_records
from tests.support.data import PAYLOADS

HUBBLE_LINES = [json.loads(line) for path in sorted((PAYLOADS / "hubble").glob("*.jsonl"))
                for line in path.read_text().splitlines() if line.strip()]


def _parsed(line: dict) -> object:
    try:
        return parse_hubble_line(line)
    except SignalError as err:
        return ("rejected", err.reason)


def _flow(response: observer_pb2.GetFlowsResponse) -> object:
    try:
        return records.hubble_flow(response)
    except SignalError as err:
        return ("rejected", err.reason)


def _masked(response: observer_pb2.GetFlowsResponse) -> observer_pb2.GetFlowsResponse:
    """What Relay sends under netwarden's field mask."""
    out = observer_pb2.GetFlowsResponse(node_name=response.node_name)
    out.time.CopyFrom(response.time)
    FieldMask(paths=list(records.HUBBLE_FIELD_MASK)).MergeMessage(response.flow, out.flow)
    return out


@pytest.mark.parametrize("index", range(len(HUBBLE_LINES)))
def test_hubble_message_parses_like_its_json_export(index: int) -> None:
    line = HUBBLE_LINES[index]
    response = hubble_response(line)
    assert response.WhichOneof("response_types") == "flow"
    assert _flow(response) == _parsed(line)
    # The field mask keeps everything the parser reads.
    assert _flow(_masked(response)) == _parsed(line)


def test_the_mask_is_smaller_than_the_flow() -> None:
    full = sum(len(hubble_response(line).SerializeToString()) for line in HUBBLE_LINES)
    masked = sum(len(_masked(hubble_response(line)).SerializeToString()) for line in HUBBLE_LINES)
    assert masked < full


def test_lost_events_are_not_flows() -> None:
    response = observer_pb2.GetFlowsResponse(lost_events=flow_pb2.LostEvent(num_events_lost=7))
    with pytest.raises(SignalError) as err:
        records.hubble_flow(response)
    assert err.value.reason == "not-a-flow"


def test_enum_numbers_unknown_to_the_subset_pass_through() -> None:
    """A drop reason this subset does not name arrives as its number and is still a drop."""
    response = hubble_response(HUBBLE_LINES[0])
    response.flow.verdict = flow_pb2.DROPPED
    response.flow.drop_reason_desc = 155  # CT_MAP_INSERTION_FAILED upstream
    assert records.hubble_line(response).flow.drop_reason_desc == 155
    flow = records.hubble_flow(response)
    assert flow.verdict == "dropped" and not flow.policy_dropped


def test_request_asks_for_follow_filters_and_mask() -> None:
    request = records.hubble_request(since_ns=1_700_000_000_123_456_789)
    assert request.follow and request.number == 0
    assert request.since.ToNanoseconds() == 1_700_000_000_123_456_789
    assert list(request.field_mask.paths) == list(records.HUBBLE_FIELD_MASK)
    assert list(request.experimental.field_mask.paths) == list(records.HUBBLE_FIELD_MASK)
    assert list(request.whitelist[0].verdict) == [flow_pb2.FORWARDED, flow_pb2.DROPPED, flow_pb2.AUDIT]
    assert request.blacklist[0].event_type[0].type == records.L7_EVENT_TYPE
    assert not records.hubble_request(since_ns=None).HasField("since")


@pytest.mark.parametrize("index", range(len(whisker_records())))
def test_goldmane_result_parses_like_its_whisker_json(index: int) -> None:
    """Real Calico 3.32.2 records: the gRPC message and Whisker's JSON of it make the same Flow,
    pod-prefix names included (attributed to the workload owning pods of that prefix)."""
    original = whisker_records()[index]
    flow = records.goldmane_flow(as_goldmane(original))
    assert flow == parse_goldmane_flow(original)
    assert flow.source.pod_prefix == original["source_name"] and flow.source.pod is None
    assert flow.source_format == "goldmane"


@pytest.mark.parametrize("index", range(len(HUBBLE_LINES)))
def test_stand_in_builds_what_protojson_parses(index: int) -> None:
    """The replay server's fast builder and protobuf's own JSON parser agree on every real export."""
    from google.protobuf import json_format

    line = HUBBLE_LINES[index]
    expected = observer_pb2.GetFlowsResponse()
    json_format.ParseDict(line, expected, ignore_unknown_fields=True)
    assert hubble_response(line) == expected
