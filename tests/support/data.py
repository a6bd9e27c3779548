"""Where the real-tool payloads the tests read live: tests/data, copied from the project's shared set
(tests/data/README.md gives each file's provenance). Inside the repository, so a fresh clone runs them."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from netwarden.tools.traffic import rfc3339

PAYLOADS = Path(__file__).resolve().parents[1] / "data"
#: A real falcosidekick POST body (Terminal shell in container).
FALCOSIDEKICK = PAYLOADS / "falco/falcosidekick_webhook-post-body_terminal-shell_2024.json"


def falco_body(namespace: str, pod: str, priority: str = "Critical", *, fresh: bool = True) -> dict[str, Any]:
    """The real falcosidekick POST body naming this pod. `fresh`: its own id and the current time (a replayed
    id is a duplicate; an old time is evidence of the past), as a live cluster's next alert would have."""
    body = json.loads(FALCOSIDEKICK.read_text())
    body["priority"] = priority
    body["output_fields"]["k8s.ns.name"] = namespace
    body["output_fields"]["k8s.pod.name"] = pod
    if fresh:
        now = time.time()
        body["uuid"] = str(uuid.uuid4())
        body["time"] = rfc3339(now)
        body["output_fields"]["evt.time"] = int(now * 1e9)
    return body
