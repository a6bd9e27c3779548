"""Signal -> policy written, end to end, against the local API server (issue 4's latency figure).

    .venv/bin/python bench/bench_signal_to_policy.py [--pods 60]

Starts the real stack (local API server, webhook on gunicorn/TLS, reconciler with TLS signal endpoints),
deploys one Deployment with --pods + 1 replicas, then for --pods of them POSTs one falcosidekick alert each
and times until that pod's quarantine NetworkPolicy is visible through a watch (one replica stays clean:
evidence covering every replica quarantines the workload instead, a different policy). Baseline in the same run: the round trip
of an authenticated POST that carries no evidence (an empty flow batch), which is the floor any signal pays.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client, watch  # noqa: E402

from netwarden import names  # noqa: E402
from netwarden.stack import start_stack  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=60)
    args = parser.parse_args()
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
            "metadata": {"name": "app"}, "spec": {"replicas": args.pods + 1, "selector": {"matchLabels": {"app": "app"}},
            "template": {"metadata": {"labels": {"app": "app"}},
                         "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]}}}})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = [p for p in core.list_namespaced_pod("bench").items if p.status.pod_ip
                    and (p.metadata.labels or {}).get(names.LABEL_INSTANCE)]
            if len(pods) >= args.pods + 1:
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
        latencies: list[float] = []
        missed: list[str] = []
        for pod in pods[: args.pods]:
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
        print(f"{len(latencies)}/{args.pods} pods quarantined" + (f"; not within 10 s: {missed}" if missed else "") + "\n")
        print("| what | samples | p50 ms | p99 ms | max ms | p50 vs baseline |")
        print("|---|---|---|---|---|---|")
        base = statistics.median(floor)
        for label, values in (("baseline: authenticated empty POST", floor),
                              ("Falco alert -> quarantine policy seen by a watch", latencies)):
            print(f"| {label} | {len(values)} | {statistics.median(values):.1f} | {percentile(values, 0.99):.1f} | "
                  f"{max(values):.1f} | {statistics.median(values) / base:.1f}x |")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
