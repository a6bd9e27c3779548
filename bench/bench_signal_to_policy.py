"""Signal -> policy written, end to end, against the local API server (issue 4's latency figure),
with no other load and while the same reconciler ingests flows (issue 15 target 3).

    .venv/bin/python bench/bench_signal_to_policy.py [--pods 60] [--flow-rate 50000]

Starts the real stack (local API server, webhook on gunicorn/TLS, reconciler with TLS signal endpoints),
deploys one Deployment with 2 x --pods + 1 replicas, then for --pods of them POSTs one falcosidekick alert
each and times until that pod's quarantine NetworkPolicy is visible through a watch (one replica stays
clean: evidence covering every replica quarantines the workload instead, a different policy); then the
same for --pods others while a load generator (a child process, two keep-alive TLS connections) POSTs
Hubble flows between the Deployment's pods, 500 per request, paced to --flow-rate flows/s (the rate the
reconciler actually took is printed). Baseline in the same run: the round trip of an authenticated POST
that carries no evidence (an empty flow batch), which is the floor any signal pays. --flow-rate 0: no
loaded rows.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client, watch  # noqa: E402

from netwarden.model import names  # noqa: E402
from netwarden.tools.stack import start_stack  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


BATCH = 500


def flow_load(url: str, token: str, ca: str, rate: float, ends_file: str) -> None:
    """Child process: POST Hubble flows between the given pods at `rate` flows/s until stdin closes,
    then print how many the reconciler accepted and over how long."""
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
    stop = threading.Event()
    accepted = [0, 0]

    def sender(k: int) -> None:
        session = requests.Session()
        interval = 2 * BATCH / rate
        due = time.perf_counter()
        n = k
        while not stop.is_set():
            answer = session.post(url, data=bodies[n % len(bodies)], timeout=30, verify=ca,
                                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
            accepted[k] += answer.json().get("accepted", 0)
            n += 2
            due += interval
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            else:
                due = time.perf_counter()  # behind: send at once, do not build a backlog

    threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(2)]
    print("ready", flush=True)
    sys.stdin.readline()
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    sys.stdin.readline()
    stop.set()
    for thread in threads:
        thread.join(60)
    print(f"{sum(accepted)} {time.perf_counter() - began}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=60)
    parser.add_argument("--flow-rate", type=float, default=50_000)
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
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = [p for p in core.list_namespaced_pod("bench").items if p.status.pod_ip
                    and (p.metadata.labels or {}).get(names.LABEL_INSTANCE)]
            if len(pods) >= 2 * args.pods + 1:
                break
            time.sleep(0.2)
        seen: dict[str, float] = {}
        cond = threading.Condition()

        def watch_policies() -> None:
            for event in watch.Watch().stream(net.list_namespaced_network_policy, "bench", timeout_seconds=600,
                                              label_selector=f"{names.LABEL_POLICY_ROLE}={names.ROLE_QUARANTINE}"):
                target = (event["object"].metadata.annotations or {}).get(names.ANNOTATION_TARGET_POD)
                with cond:
                    seen.setdefault(target, time.perf_counter())
                    cond.notify_all()

        threading.Thread(target=watch_policies, daemon=True).start()
        time.sleep(0.5)
        floor = []
        for _ in range(args.pods):
            started = time.perf_counter()
            stack.post_signal("/signals/flows", "")
            floor.append((time.perf_counter() - started) * 1000)
        def quarantine_each(targets: list) -> tuple[list[float], list[str]]:
            latencies: list[float] = []
            missed: list[str] = []
            for pod in targets:
                instance = pod.metadata.labels[names.LABEL_INSTANCE]
                body = {"output": "shell", "priority": "Critical", "rule": "Terminal shell in container",
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
                        "output_fields": {"k8s.ns.name": "bench", "k8s.pod.name": pod.metadata.name}}
                started = time.perf_counter()
                stack.post_signal("/signals/falco", body)
                with cond:
                    cond.wait_for(lambda: instance in seen, timeout=10)
                if instance in seen:
                    latencies.append((seen[instance] - started) * 1000)
                else:
                    missed.append(pod.metadata.name)
            return latencies, missed

        rows = [("baseline: authenticated empty POST", floor)]
        quiet, missed = quarantine_each(pods[: args.pods])
        rows.append(("Falco alert -> quarantine policy seen by a watch", quiet))
        took = ""
        if args.flow_rate > 0:
            ends = Path(tempfile.mkdtemp(prefix="nw-bench-ends-")) / "ends.json"
            ends.write_text(json.dumps([{"namespace": "bench", "name": p.metadata.name, "ip": p.status.pod_ip}
                                        for p in pods]))
            load = subprocess.Popen([sys.executable, __file__, "--load", f"{stack.signals_url}/signals/flows",
                                     stack.signal_token, stack.ca_file, str(args.flow_rate), str(ends)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert load.stdin is not None and load.stdout is not None
            load.stdout.readline()  # bodies built
            load.stdin.write("go\n")
            load.stdin.flush()
            time.sleep(2.0)  # the reconciler is ingesting at its steady rate before the first alert
            loaded, missed_loaded = quarantine_each(pods[args.pods: 2 * args.pods])
            load.stdin.write("stop\n")
            load.stdin.flush()
            accepted, seconds = (float(x) for x in load.stdout.readline().split())
            load.wait(60)
            missed += missed_loaded
            took = f"; flows ingested meanwhile: {accepted / seconds:,.0f}/s (offered {args.flow_rate:,.0f}/s)"
            rows.append((f"the same while the reconciler ingests {accepted / seconds:,.0f} flows/s", loaded))
        done = sum(len(values) for _, values in rows[1:])
        print(f"{done}/{len(rows[1:]) * args.pods} pods quarantined" + (f"; not within 10 s: {missed}" if missed else "")
              + took + "\n")
        print("| what | samples | p50 ms | p99 ms | max ms | p50 vs baseline |")
        print("|---|---|---|---|---|---|")
        base = statistics.median(floor)
        for label, values in rows:
            if values:
                print(f"| {label} | {len(values)} | {statistics.median(values):.1f} | {percentile(values, 0.99):.1f} | "
                      f"{max(values):.1f} | {statistics.median(values) / base:.1f}x |")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
