"""Replay throughput and memory on a large Hubble export, against decoding floors.

    .venv/bin/python bench/bench_replay.py [--flows 1000000] [--workloads 200] [--rounds 1] [--before DIR]

Writes a synthetic `hubble observe -o json` file (realistic record shape and size), then times in
separate processes, interleaved per round: the floors, reading every line and decoding it with
`json.loads` (a dict of all of it), `orjson.loads`, or msgspec into netwarden's typed HubbleLine
(only the fields read), and scoring nothing; and `netwarden replay` over the same file with a
matching pod snapshot (parse, attribute, score). CPU is each child's user+system time (the figure
per core, steadier than wall time on a shared machine); peak RSS the largest child so far.
`--before DIR` adds `netwarden replay` run from another checkout (e.g. a worktree at an older
commit) to the same interleaved rounds: a before/after in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netwarden.tools.traffic import PodEnd, WorldEnd, hubble_flow  # noqa: E402

FLOOR = "import sys\n{setup}\nn=0\nfor line in open(sys.argv[1],'rb'):\n    decode(line); n+=1\nprint(n)\n"
FLOORS = {
    "floor: read + json.loads": "import json\ndecode = json.loads",
    "floor: read + orjson.loads": "import orjson\ndecode = orjson.loads",
    "floor: read + msgspec typed decode": "from netwarden.reconciler.signals.hubble import decode_hubble_line as decode",
}


def make_dataset(directory: Path, flows: int, workloads: int, seed: int = 3) -> tuple[Path, Path]:
    rng = random.Random(seed)
    pods, ends = [], []
    for w in range(workloads):
        namespace = f"ns{w % 20}"
        for replica in range(2):
            name = f"app{w}-{replica}"
            ip = f"10.{(w >> 8) & 255}.{w & 255}.{replica + 1}"
            ends.append(PodEnd(namespace, name, ip, {"app": f"app{w}"}))
            pods.append({"metadata": {"name": name, "namespace": namespace, "labels": {"pod-template-hash": "h"},
                                      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"app{w}-h",
                                                           "uid": f"u{w}", "controller": True}]},
                         "status": {"podIP": ip}})
    # Each workload talks to 3 fixed peers; 0.1% of flows go somewhere new (to the world, or a new peer).
    peers = {i: [rng.randrange(len(ends)) for _ in range(3)] for i in range(len(ends))}
    flows_path, pods_path = directory / "flows.jsonl", directory / "pods.json"
    pods_path.write_text(json.dumps({"kind": "List", "items": pods}))
    start = 1_700_000_000.0
    with flows_path.open("w") as handle:
        for i in range(flows):
            src = rng.randrange(len(ends))
            if rng.random() < 0.001:
                dst = WorldEnd(f"203.0.113.{rng.randrange(1, 255)}") if rng.random() < 0.5 else ends[rng.randrange(len(ends))]
                port = rng.choice((22, 443, 3306, 6379))
            else:
                dst, port = ends[rng.choice(peers[src])], 8080
            handle.write(json.dumps(hubble_flow(ends[src], dst, port, "TCP", start + i * 0.001,
                                                source_port=rng.randint(32768, 60999))) + "\n")
    return flows_path, pods_path


def run(argv: list[str], cwd: Path = ROOT) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS MiB so far, stdout) of one child (run in `cwd`: the
    checkout whose netwarden `-m` imports)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=cwd)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, after.ru_maxrss / 1024, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--workloads", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--before", type=Path, help="another checkout of netwarden whose replay joins the rounds")
    args = parser.parse_args()
    commands: dict[str, list[str]] = {}
    where: dict[str, Path] = {}
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        flows, pods = make_dataset(Path(tmp), args.flows, args.workloads)
        size = os.path.getsize(flows) / 2**20
        print(f"dataset: {args.flows:,} Hubble flows, {size:.0f} MiB, {args.workloads} workloads "
              f"(written in {time.perf_counter() - t0:.0f}s); {args.rounds} interleaved round(s), medians")
        for label, setup in FLOORS.items():
            commands[label] = [sys.executable, "-c", FLOOR.format(setup=setup), str(flows)]
        replay_argv = [sys.executable, "-m", "netwarden.cli", "replay", "--flows", str(flows), "--pods", str(pods), "--quiet"]
        if args.before is not None:
            label = f"netwarden replay before ({args.before})"
            commands[label], where[label] = replay_argv, args.before.resolve()
        commands["netwarden replay (parse, attribute, score)"] = replay_argv
        out = ""
        outputs: dict[str, str] = {}
        for _ in range(args.rounds):
            for label, argv in commands.items():
                seconds, used, peak, out_ = run(argv, where.get(label, ROOT))
                wall.setdefault(label, []).append(seconds)
                cpu.setdefault(label, []).append(used)
                rss[label] = peak
                out = out_ if label.startswith("netwarden replay (") else out
                outputs[label] = out_
    decisions = next((line for line in out.splitlines() if line.startswith("decisions:")), "")
    base = statistics.median(cpu["floor: read + json.loads"])
    print()
    print("| what | seconds (wall) | flows/s (wall) | CPU seconds | flows per CPU-second | CPU vs json.loads floor | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for label in commands:
        w, c = statistics.median(wall[label]), statistics.median(cpu[label])
        print(f"| {label} | {w:.1f} | {args.flows / w:,.0f} | {c:.1f} | {args.flows / c:,.0f} | {c / base:.2f}x | "
              f"{rss[label]:.0f} |")
    print(f"\n{decisions}")
    if args.before is not None:
        # Everything replay prints but its throughput line: baselines, scores, steps, decisions.
        said = {label: [line for line in text.splitlines() if not line.startswith("throughput:")]
                for label, text in outputs.items() if label.startswith("netwarden replay")}
        print("before and after print the same baselines, scores and decisions:", len({tuple(v) for v in said.values()}) == 1)
    print("note: peak RSS is the largest child so far (getrusage RUSAGE_CHILDREN), in the order of the rows.")


if __name__ == "__main__":
    main()
