"""Signal -> policy written, end to end, against the local API server (issue 4's latency figure),
with no other load and while the same reconciler ingests flows (issue 15 target 3).

    .venv/bin/python bench/bench_signal_to_policy.py [--pods 60] [--flow-rate 50000]

Starts the real stack (local API server, webhook on gunicorn/TLS, reconciler with TLS signal endpoints),
deploys one Deployment with 2 x --pods + 1 replicas, then POSTs one falcosidekick alert per pod and times
until that pod's quarantine NetworkPolicy is visible through a watch (one replica stays clean: evidence
covering every replica quarantines the workload instead, a different policy), and until the workload's
own policy carving the pod out is visible too: NetworkPolicies are additive, so only then does the
quarantine hold (the last row, over the unloaded alerts). With --flow-rate, the
alerts alternate (ABBA, so neither kind always goes first) between no other load and a load generator
(a child process, two keep-alive TLS connections) POSTing Hubble flows between the Deployment's pods,
500 per request, paced to --flow-rate flows/s: the load is paused (its requests in flight answered)
before each unloaded alert and running for `--warmup` seconds before each loaded one, so both kinds see
the same machine (it is shared) and the ratio is the figure to read. The rate the reconciler actually
took while the load ran is printed, and so is when each alert's POST was answered (the policy is written
before the answer). Baseline in the same run: the round trip of an authenticated POST that carries no
evidence (an empty flow batch), which is the floor any signal pays. --flow-rate 0: no loaded rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client, watch  # noqa: E402

from netwarden.model import names  # noqa: E402
from netwarden.tools.stack import start_stack  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


BATCH = 500


def flow_load(url: str, token: str, ca: str, rate: float, ends_file: str) -> None:
    """Child process: POST Hubble flows between the given pods at `rate` flows/s while running. Reads
    commands on stdin: "go" (start or resume), "pause" (answers "paused" once no request is in flight),
    "stop" (answers how many flows the reconciler accepted and over how many seconds of running)."""
    import requests

    from netwarden.tools.traffic import PodEnd, hubble_flow

    ends = [PodEnd(e["namespace"], e["name"], e["ip"], {"app": "app"}) for e in json.loads(Path(ends_file).read_text())]
    start = time.time()
    bodies = []
    for b in range(64):
        lines = [json.dumps(hubble_flow(ends[i % len(ends)], ends[(i * 7 + 1) % len(ends)], 8080, "TCP",
                                        start + (b * BATCH + i) / 1000.0, source_port=40000 + i % 20000))
                 for i in range(BATCH)]
        bodies.append("\n".join(lines) + "\n")
    running = threading.Event()
    stop = threading.Event()
    idle = [threading.Event(), threading.Event()]
    accepted = [0, 0]

    def sender(k: int) -> None:
        session = requests.Session()
        interval = 2 * BATCH / rate
        n = k
        while not stop.is_set():
            idle[k].set()
            running.wait(0.05)
            if not running.is_set():
                continue
            idle[k].clear()
            due = time.perf_counter()
            while running.is_set() and not stop.is_set():
                answer = session.post(url, data=bodies[n % len(bodies)], timeout=30, verify=ca,
                                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
                accepted[k] += answer.json().get("accepted", 0)
                n += 2
                due += interval
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)  # the offered flow rate is the load under test, not a wait
                else:
                    due = time.perf_counter()  # behind: send at once, do not build a backlog

    threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(2)]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    ran = 0.0
    began = 0.0
    for line in sys.stdin:
        command = line.strip()
        if command == "go" and not running.is_set():
            began = time.perf_counter()
            running.set()
        elif command == "pause":
            if running.is_set():
                running.clear()
                ran += time.perf_counter() - began
            for flag in idle:
                flag.wait(60)
            print("paused", flush=True)
        elif command == "stop":
            break
    if running.is_set():
        ran += time.perf_counter() - began
    stop.set()
    running.clear()
    for thread in threads:
        thread.join(60)
    print(f"{sum(accepted)} {ran}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=60)
    parser.add_argument("--flow-rate", type=float, default=50_000)
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds the flow load runs before each loaded alert")
    parser.add_argument("--load", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        return flow_load(args.load[0], args.load[1], args.load[2], float(args.load[3]), args.load[4])
    config = {"reconciler": {"cleanup_grace_seconds": 60.0},
              "core": {"blast_max_workloads": 1000, "blast_max_pod_fraction": 1.0, "write_rate_per_second": 1000.0,
                       "write_burst": 1000}}
    stack = start_stack(Path(tempfile.mkdtemp(prefix="nw-bench-")), reconciler_config=config, progress=lambda m: None)
    try:
        api = stack.api_client()
        core, apps, net = client.CoreV1Api(api), client.AppsV1Api(api), client.NetworkingV1Api(api)
        core.create_namespace({"metadata": {"name": "bench", "annotations": {names.ANNOTATION_INJECT: "enabled",
                                                                          names.ANNOTATION_MODE: "enforce"}}})
        apps.create_namespaced_deployment("bench", {
            "metadata": {"name": "app"}, "spec": {"replicas": 2 * args.pods + 1, "selector": {"matchLabels": {"app": "app"}},
            "template": {"metadata": {"labels": {"app": "app"}},
                         "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]}}}})
        def labelled_pods() -> list:
            found = [p for p in core.list_namespaced_pod("bench").items if p.status.pod_ip
                     and (p.metadata.labels or {}).get(names.LABEL_INSTANCE)]
            return found if len(found) >= 2 * args.pods + 1 else []

        pods = wait_for(labelled_pods, f"{2 * args.pods + 1} labelled pods with an IP", timeout=120, interval=0.2)
        seen: dict[str, float] = {}  # instance -> when its quarantine policy was seen
        carved: dict[str, float] = {}  # instance -> when the workload's policy was seen carving it out
        cond = threading.Condition()

        def watch_policies() -> None:
            try:
                for event in watch.Watch().stream(net.list_namespaced_network_policy, "bench", timeout_seconds=600):
                    obj = event["object"]
                    role = (obj.metadata.labels or {}).get(names.LABEL_POLICY_ROLE)
                    now = time.perf_counter()
                    with cond:
                        if role == names.ROLE_QUARANTINE:
                            seen.setdefault((obj.metadata.annotations or {}).get(names.ANNOTATION_TARGET_POD), now)
                        elif role == names.ROLE_BASELINE:
                            for expression in obj.spec.pod_selector.match_expressions or []:
                                if expression.key == names.LABEL_INSTANCE and expression.operator == "NotIn":
                                    for instance in expression.values or []:
                                        carved.setdefault(instance, now)
                        cond.notify_all()
            except Exception:  # noqa: BLE001 - the stack stopping under the watch ends the run, not an error
                return

        threading.Thread(target=watch_policies, daemon=True).start()
        time.sleep(0.5)  # the watch opens its request a moment later, and the client's stream gives no sign of it
        floor = []
        for _ in range(args.pods):
            started = time.perf_counter()
            stack.post_signal("/signals/flows", "")
            floor.append((time.perf_counter() - started) * 1000)
        def quarantine(pod: Any) -> tuple[float, float, float] | None:
            """(ms until the POST was answered, ms until the watch saw the quarantine policy, ms until it also
            saw the workload's policy carve the pod out: NetworkPolicies are additive, so the quarantine
            holds from then); None: not within 10 s."""
            instance = pod.metadata.labels[names.LABEL_INSTANCE]
            body = {"output": "shell", "priority": "Critical", "rule": "Terminal shell in container",
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
                    "output_fields": {"k8s.ns.name": "bench", "k8s.pod.name": pod.metadata.name}}
            started = time.perf_counter()
            stack.post_signal("/signals/falco", body)
            answered = time.perf_counter()
            with cond:
                cond.wait_for(lambda: instance in seen and instance in carved, timeout=10)
            if instance not in seen or instance not in carved:
                return None
            return ((answered - started) * 1000, (seen[instance] - started) * 1000,
                    (max(seen[instance], carved[instance]) - started) * 1000)

        quiet: list[tuple[float, float, float]] = []
        loaded: list[tuple[float, float, float]] = []
        missed: list[str] = []
        load = None
        if args.flow_rate > 0:
            ends = Path(tempfile.mkdtemp(prefix="nw-bench-ends-")) / "ends.json"
            ends.write_text(json.dumps([{"namespace": "bench", "name": p.metadata.name, "ip": p.status.pod_ip}
                                        for p in pods]))
            load = subprocess.Popen([sys.executable, __file__, "--load", f"{stack.signals_url}/signals/flows",
                                     stack.signal_token, stack.ca_file, str(args.flow_rate), str(ends)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert load.stdin is not None and load.stdout is not None
            load.stdout.readline()  # bodies built

        def command(word: str) -> None:
            assert load is not None and load.stdin is not None and load.stdout is not None
            load.stdin.write(word + "\n")
            load.stdin.flush()
            if word == "pause":
                load.stdout.readline()  # no flow request in flight

        unused = iter(pods)
        for i in range(args.pods):
            kinds = ["quiet", "loaded"] if load is not None else ["quiet"]
            if i % 2:
                kinds.reverse()  # ABBA: neither kind always follows the other
            for kind in kinds:
                pod = next(unused)
                if kind == "loaded":
                    command("go")
                    time.sleep(args.warmup)  # the reconciler is ingesting at its steady rate
                elif load is not None:
                    command("pause")
                result = quarantine(pod)
                if result is None:
                    missed.append(pod.metadata.name)
                else:
                    (loaded if kind == "loaded" else quiet).append(result)
        took = ""
        rows = [("baseline: authenticated empty POST", floor, floor)]
        rows.append(("Falco alert -> quarantine policy seen by a watch, no other load", [q[1] for q in quiet],
                     [q[0] for q in quiet]))
        holds = ("Falco alert -> the quarantine holds (the workload's policy carving the pod out seen too), no other load",
                 [q[2] for q in quiet], [q[0] for q in quiet])
        if load is not None:
            command("pause")
            command("stop")
            accepted, seconds = (float(x) for x in load.stdout.readline().split())
            load.wait(60)
            took = f"; flows ingested while the load ran: {accepted / seconds:,.0f}/s (offered {args.flow_rate:,.0f}/s)"
            rows.append((f"the same, interleaved, while the reconciler ingests {accepted / seconds:,.0f} flows/s",
                         [q[1] for q in loaded], [q[0] for q in loaded]))
        rows.append(holds)
        done = sum(len(values) for _, values, _ in rows[1:-1])
        print(f"{done}/{len(rows[1:-1]) * args.pods} pods quarantined" + (f"; not within 10 s: {missed}" if missed else "")
              + took + "\n")
        print("| what | samples | p50 ms | p99 ms | max ms | p50 vs baseline | POST answered p50 / p99 ms |")
        print("|---|---|---|---|---|---|---|")
        base = statistics.median(floor)
        for label, values, answered in rows:
            if values:
                print(f"| {label} | {len(values)} | {statistics.median(values):.1f} | {percentile(values, 0.99):.1f} | "
                      f"{max(values):.1f} | {statistics.median(values) / base:.1f}x | "
                      f"{statistics.median(answered):.1f} / {percentile(answered, 0.99):.1f} |")
        if len(rows) == 4 and rows[1][1] and rows[2][1]:
            quiet_ms, loaded_ms = rows[1][1], rows[2][1]
            print(f"\nunder load / no load: p50 {statistics.median(loaded_ms) / statistics.median(quiet_ms):.2f}x, "
                  f"p99 {percentile(loaded_ms, 0.99) / percentile(quiet_ms, 0.99):.2f}x")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
