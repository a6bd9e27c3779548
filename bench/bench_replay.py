"""Replay throughput and memory on a large Hubble export, against a JSON-parsing baseline.

    .venv/bin/python bench/bench_replay.py [--flows 1000000] [--workloads 200]

Writes a synthetic `hubble observe -o json` file (realistic record shape and size), then times in
separate processes: (a) the baseline, reading and json-decoding every line; (b) `netwarden replay`
over the same file with a matching pod snapshot. Peak RSS is each child's own (getrusage).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netwarden.traffic import PodEnd, WorldEnd, hubble_flow  # noqa: E402

BASELINE = "import json,sys\nn=0\nfor line in open(sys.argv[1],'rb'):\n    json.loads(line); n+=1\nprint(n)\n"


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


def run(argv: list[str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--workloads", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        flows, pods = make_dataset(Path(tmp), args.flows, args.workloads)
        size = os.path.getsize(flows) / 2**20
        print(f"dataset: {args.flows:,} Hubble flows, {size:.0f} MiB, {args.workloads} workloads "
              f"(written in {time.perf_counter() - t0:.0f}s)")
        base_s, base_rss, _ = run([sys.executable, "-c", BASELINE, str(flows)])
        replay_s, replay_rss, out = run([sys.executable, "-m", "netwarden.cli", "replay", "--flows", str(flows),
                                         "--pods", str(pods), "--quiet"])
    decisions = next((line for line in out.splitlines() if line.startswith("decisions:")), "")
    print()
    print(f"| {'what':<34} | {'seconds':>8} | {'flows/s':>10} | {'peak RSS MiB':>12} | {'time vs baseline':>16} |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 12}|{'-' * 14}|{'-' * 18}|")
    print(f"| {'baseline: read + json.loads':<34} | {base_s:8.1f} | {args.flows / base_s:10,.0f} | {base_rss:12.0f} | {1.0:16.2f} |")
    print(f"| {'netwarden replay (dry-run)':<34} | {replay_s:8.1f} | {args.flows / replay_s:10,.0f} | {replay_rss:12.0f} | "
          f"{replay_s / base_s:16.2f} |")
    print(f"\n{decisions}")
    print("note: peak RSS is the largest child so far (getrusage RUSAGE_CHILDREN); run order: baseline first.")


if __name__ == "__main__":
    main()
