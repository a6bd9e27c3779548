"""`netwarden scaleout decide`: one decide engine as its own process (what the tests kill -9, and the bench scales).

It reads its facts from files (pods as PodRef fields, the core config as JSON) and writes its
decisions through `FileSink`, a policy store in a directory whose conditional write (one lock, the
last sequence per workload) is the same precondition the cluster writer carries on the policy.
`--status` is rewritten every second with the engine's counters, for whoever watches it.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from netwarden.reconciler.core.decision import Decision
from netwarden.reconciler.core.pods import PodRef
from netwarden.reconciler.core.config import CoreConfig
from netwarden.reconciler.core.engine import DecisionEngine
from netwarden.reconciler.core.snapshot import intent_data
from netwarden.reconciler.scaleout.decide import Decider, Sequence_
from netwarden.reconciler.scaleout.wire import Topics


class FileSink:
    """Conditional writes into `directory/writes.jsonl`, serialised across processes by a lock file."""

    def __init__(self, directory: Path, engine_name: str) -> None:
        self.directory = directory
        self.engine_name = engine_name
        directory.mkdir(parents=True, exist_ok=True)
        self.lock_path = directory / "lock"
        self.last_path = directory / "last.json"
        self.log_path = directory / "writes.jsonl"

    def write(self, decision: Decision, sequence: Sequence_) -> bool:
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            last = json.loads(self.last_path.read_text()) if self.last_path.exists() else {}
            seen = last.get(decision.identity)
            if seen is not None and tuple(sequence) <= tuple(seen):
                return False
            last[decision.identity] = list(sequence)
            record = {"engine": self.engine_name, "identity": decision.identity, "action": decision.action,
                      "effect": decision.effect, "step_after": decision.step_after, "time": decision.time,
                      "sequence": list(sequence), "intents": [intent_data(i) for i in decision.intents]}
            with open(self.log_path, "a") as log:
                log.write(json.dumps(record) + "\n")
            tmp = self.last_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(last))
            os.replace(tmp, self.last_path)
            return True


def read_writes(directory: Path) -> list[dict[str, Any]]:
    path = directory / "writes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def pods_of(path: Path) -> list[PodRef]:
    return [PodRef(**row) for row in json.loads(path.read_text())]


def run_decide(args: argparse.Namespace) -> int:
    core = CoreConfig.from_mapping(json.loads(Path(args.core).read_text())) if args.core else CoreConfig()
    engine = DecisionEngine(core)
    for ref in pods_of(Path(args.pods)):
        engine.upsert_pod(ref)
    topics = Topics(args.observations_topic, args.state_topic, args.partitions)
    decider = Decider(args.bootstrap, engine, FileSink(Path(args.sink_dir), args.name), topics, group=args.group,
                      name=args.name, checkpoint_seconds=args.checkpoint_seconds, extra={"log_level": 3})
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: decider.stop())
    if args.status:
        threading.Thread(target=_report, args=(decider, Path(args.status)), daemon=True).start()
    decider.run()
    if args.status:
        _write_status(decider, Path(args.status))
    return 0


def _write_status(decider: Decider, path: Path) -> None:
    c = decider.counters
    with decider.lock:
        owned = sorted(decider.owned)
        workloads = len(decider.engine.workloads())
    status = {"name": decider.name, "owned": owned, "records": c.records, "decisions": c.decisions,
              "written": c.written, "duplicates": c.duplicates, "fenced": c.fenced, "restored": c.restored,
              "assignments": c.assignments, "restores": c.restores, "workloads": workloads,
              "assigned_at": c.assigned_at, "first_write_after_assign": c.first_write_after_assign,
              "first_record_at": c.first_record_at, "last_record_at": c.last_record_at,
              "monotonic": time.monotonic(), "time": time.time()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, path)


def _report(decider: Decider, path: Path) -> None:
    while True:
        _write_status(decider, path)
        time.sleep(0.5)


def add_scaleout_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("scaleout", help="scale-out mode on Kafka: run one decide engine (tests, bench)")
    commands = parser.add_subparsers(dest="scaleout_command", metavar="ROLE")
    decide = commands.add_parser("decide", help="one decide engine of a consumer group, writing through a file sink")
    decide.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, HOST:PORT[,...]")
    decide.add_argument("--name", required=True, help="this engine's name (client id, transactional id)")
    decide.add_argument("--pods", required=True, help="JSON list of pods (PodRef fields)")
    decide.add_argument("--sink-dir", required=True, help="directory of the file policy sink shared by the engines")
    decide.add_argument("--core", help="JSON file of core settings (netwarden.reconciler.core.config)")
    decide.add_argument("--status", help="file rewritten every 0.5 s with this engine's counters")
    decide.add_argument("--group", default="netwarden-decide")
    decide.add_argument("--partitions", type=int, default=12)
    decide.add_argument("--observations-topic", default=Topics.observations)
    decide.add_argument("--state-topic", default=Topics.state)
    decide.add_argument("--checkpoint-seconds", type=float, default=2.0)
    decide.set_defaults(func=run_decide)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


if __name__ == "__main__":
    main_parser = argparse.ArgumentParser(prog="python -m netwarden.reconciler.scaleout.cli")
    add_scaleout_parser(main_parser.add_subparsers(dest="command"))
    parsed = main_parser.parse_args(["scaleout", *sys.argv[1:]])
    sys.exit(int(parsed.func(parsed) or 0))
