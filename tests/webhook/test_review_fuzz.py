"""Fuzzed AdmissionReviews (issue 11): API-shaped and garbage bodies posted to the real Flask app, and
the property that every label netwarden emits is one the API server accepts.

The oracle for label keys and values is the local API server's own validation (`localkube/validation.py`),
written from upstream's rules independently of netwarden's `labelvalues.py`.

`NETWARDEN_FUZZ_EXAMPLES=N` raises the number of examples; with `-s` the counts by outcome are printed.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections import Counter
from typing import Any, Iterator

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localkube.resources import lookup
from localkube.validation import label_key_errors, label_value_errors, validate
from netwarden.model import names
from netwarden.platform.config import NetwardenConfig
from netwarden.model.identity import OwnerRef
from netwarden.model.labels import NamespaceFacts
from tests.support.data import PAYLOADS
from netwarden.model.admission import AdmissionSettings
from netwarden.webhook.admission import decide_admission, read_review
from netwarden.webhook.app import create_app

EXAMPLES = int(os.environ.get("NETWARDEN_FUZZ_EXAMPLES", "300"))
SEEDS = [json.loads(p.read_text()) for p in sorted((PAYLOADS / "admission").glob("*.json"))
         if "request-only" not in p.name]
OUTCOMES: Counter[str] = Counter()

# Text as it may arrive in JSON: any code point, lone surrogates and newlines included.
ANY_TEXT = st.text(alphabet=st.characters(codec=None), max_size=70)
NEAR_VALID = st.one_of(
    st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,70}[a-z0-9])?\Z"),
    st.from_regex(r"\A[a-z0-9]{1,12}\Z").map(lambda v: v + "\n"),
    ANY_TEXT,
)
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), ANY_TEXT)
JSON_ANY = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(ANY_TEXT, inner, max_size=4)), max_leaves=12)
KINDS = st.one_of(st.sampled_from(["ReplicaSet", "Deployment", "Job", "CronJob", "StatefulSet", "DaemonSet",
                                   "Odd~Kind", "Node", ""]), ANY_TEXT)


@st.composite
def owner_refs(draw: Any) -> list[dict[str, Any]]:
    return draw(st.lists(st.fixed_dictionaries({
        "apiVersion": st.sampled_from(["apps/v1", "batch/v1", "example.com/v1"]), "kind": KINDS,
        "name": NEAR_VALID, "uid": st.one_of(st.just(""), st.uuids().map(str)), "controller": st.booleans()}),
        max_size=2))


@st.composite
def api_shaped(draw: Any) -> dict[str, Any]:
    """A real review with everything a pod creator controls drawn at random."""
    review = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    request = review["request"]
    request["uid"] = draw(st.uuids().map(str))
    request["operation"] = draw(st.sampled_from(["CREATE", "CREATE", "UPDATE", "DELETE", "CONNECT"]))
    pod = request.get("object") or {}
    meta = pod.setdefault("metadata", {})
    meta["labels"] = draw(st.dictionaries(st.one_of(st.sampled_from(list(names.POD_LABELS) + [
        names.LABEL_INJECT, names.LABEL_APP_COMPONENT, "pod-template-hash", f"{names.PREFIX}/other"]), NEAR_VALID),
        NEAR_VALID, max_size=5))
    meta["annotations"] = draw(st.dictionaries(st.sampled_from([
        names.ANNOTATION_INJECT, names.ANNOTATION_PURPOSE, names.ANNOTATION_ALLOW_FROM, names.ANNOTATION_ALLOW_TO]),
        st.one_of(st.just(names.INJECT_ENABLED), NEAR_VALID), max_size=4))
    meta["ownerReferences"] = draw(owner_refs())
    if draw(st.booleans()):
        meta["name"] = draw(NEAR_VALID)
    else:
        meta.pop("name", None)
        meta["generateName"] = draw(NEAR_VALID)
    pod.setdefault("spec", {})["serviceAccountName"] = draw(NEAR_VALID)
    request["object"] = pod
    if request["operation"] == "UPDATE":
        request["oldObject"] = copy.deepcopy(pod)
    return review


@st.composite
def garbled(draw: Any) -> Any:
    """Garbage: an API-shaped review with any value put anywhere, or any JSON at all."""
    if draw(st.booleans()):
        return draw(JSON_ANY)
    review = draw(api_shaped())
    node: Any = review
    for _ in range(draw(st.integers(1, 5))):
        if not isinstance(node, dict) or not node:
            break
        key = draw(st.sampled_from(sorted(node, key=str)))
        if draw(st.booleans()) or not isinstance(node[key], dict):
            node[key] = draw(JSON_ANY)
            break
        node = node[key]
    return review


@pytest.fixture(scope="module")
def http() -> Iterator[FlaskClient]:
    yield create_app(NetwardenConfig(), None).test_client()
    if OUTCOMES:
        print(f"\nfuzzed reviews by outcome: {dict(sorted(OUTCOMES.items()))} (total {sum(OUTCOMES.values())})")


def check_answer(http: FlaskClient, body: Any, raw: bytes | None = None) -> None:
    """No 5xx; every answer is JSON; a review with a usable uid gets it back in a well-formed AdmissionReview."""
    data = raw if raw is not None else json.dumps(body).encode("utf-8", "surrogatepass")
    for path in ("/mutate", "/validate"):
        answer = http.post(path, data=data, content_type="application/json")
        assert answer.status_code in (200, 400), (answer.status_code, answer.data[:300])
        payload = json.loads(answer.data)
        request = body.get("request") if isinstance(body, dict) else None
        uid = request.get("uid") if isinstance(request, dict) else None
        if answer.status_code == 400:
            assert isinstance(payload["error"], str)
            OUTCOMES["http-400"] += 1
            continue
        assert payload["kind"] == "AdmissionReview" and isinstance(payload["response"]["allowed"], bool)
        assert payload["response"]["uid"] == uid
        if "patch" in payload["response"]:
            assert isinstance(json.loads(base64.b64decode(payload["response"]["patch"])), list)
        OUTCOMES[f"{path[1:]}:" + ("allowed" if payload["response"]["allowed"] else
                                    f"refused-{payload['response']['status']['code']}")] += 1


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                             HealthCheck.too_slow])


@FUZZ
@given(review=api_shaped())
def test_api_shaped_reviews_always_get_a_well_formed_answer(http: FlaskClient, review: dict[str, Any]) -> None:
    check_answer(http, review)


@FUZZ
@given(body=garbled())
def test_garbage_reviews_never_get_a_5xx(http: FlaskClient, body: Any) -> None:
    check_answer(http, body)


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,  # deeper than the parser recurses: was an HTML 500 (RecursionError)
    b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": "x"}',
    b"\xff\xfe not utf-8",
])
def test_bodies_nobody_can_read_are_a_json_400(http: FlaskClient, raw: bytes) -> None:
    answer = http.post("/mutate", data=raw, content_type="application/json")
    assert answer.status_code == 400 and isinstance(answer.get_json()["error"], str)


def test_malformed_envelopes_with_a_uid_are_refused_in_a_well_formed_review(http: FlaskClient) -> None:
    seed = copy.deepcopy(SEEDS[0])
    cases = {"kind": "Pod", "userInfo": [], "object": {"metadata": {"name": "p\ud800",
             "annotations": {names.ANNOTATION_INJECT: "enabled"}}}}  # were 500s: AttributeError, UnicodeEncodeError
    for key, value in cases.items():
        review = copy.deepcopy(seed)
        review["request"][key] = value
        check_answer(http, review)
    policy = copy.deepcopy(seed)  # the validating webhook also warns on user NetworkPolicies
    policy["request"].update(kind={"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"},
                             object={"metadata": {"name": "np"}, "spec": {"ingress": ["x"], "egress": [{"to": [1]}]}})
    check_answer(http, policy)


# --- every emitted label is one the API accepts (finding: values the API refuses) -------------------


@settings(max_examples=EXAMPLES, deadline=None)
@given(review=api_shaped(), namespace_labels=st.dictionaries(st.sampled_from(
    [names.ANNOTATION_ENVIRONMENT, names.LABEL_ENVIRONMENT_PLAIN, names.LABEL_INJECT]), NEAR_VALID, max_size=3),
       namespace_annotations=st.dictionaries(st.sampled_from(
           [names.ANNOTATION_ENVIRONMENT, names.ANNOTATION_MODE, names.ANNOTATION_INJECT]), NEAR_VALID, max_size=3),
       verified=st.booleans(), top_kind=KINDS, top_name=NEAR_VALID)
def test_every_label_netwarden_emits_passes_the_api_servers_rules(
        review: dict[str, Any], namespace_labels: dict[str, str], namespace_annotations: dict[str, str],
        verified: bool, top_kind: str, top_name: str) -> None:
    try:
        _, request = read_review(review)
    except Exception:  # noqa: BLE001 - not API-shaped after all (e.g. a lone surrogate): the app answers 400
        return
    request["operation"] = "CREATE"
    namespace_annotations = {**namespace_annotations, names.ANNOTATION_INJECT: names.INJECT_ENABLED}
    facts = NamespaceFacts(str(request.get("namespace") or "default"), namespace_labels, namespace_annotations)
    parents: dict[tuple[str, str], Any] = {}
    if verified:  # every claimed owner "verified", its own controller whatever was drawn
        for ref in request["object"]["metadata"].get("ownerReferences") or []:
            parents[(str(ref.get("kind")), str(ref.get("name")))] = [OwnerRef("v1", top_kind, top_name, "u", True)]
            parents[(top_kind, top_name)] = []
    decision = decide_admission(request, facts, parents, "2d17dd5a-6757-4248-b1ae-1074c267529c", AdmissionSettings())
    for key, value in decision.labels.items():
        assert not label_key_errors(key) and not label_value_errors(value), (key, value)
    if decision.policy_manifest is not None:
        causes = validate(lookup("networking.k8s.io", "v1", "networkpolicies"), decision.policy_manifest)
        assert not [c for c in causes if "label" in c.get("field", "") or c.get("field") == "metadata.name"], causes
