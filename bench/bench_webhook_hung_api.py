"""Latency of one ReplicaSet-owned pod's review against a hung API (issue 11): the ReplicaSet GET and the
NetworkPolicy POST held 30 s by the local API server's fault injection, the webhook on gunicorn over TLS,
`?timeout=5s` as kube-apiserver sends it with the chart's timeoutSeconds.

    .venv/bin/python bench/bench_webhook_hung_api.py [REPO] [WORKDIR]

REPO is the checkout whose webhook runs (default: this one), so an older checkout can be compared.
Three reviews, each claiming a fresh ReplicaSet (uncached); prints latency, HTTP status and `allowed`.
"""
import json, os, subprocess, sys, tempfile, time, uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import requests
from kubernetes import client
from netwarden.certs.pki import generate_ca, issue_certificate
from netwarden.tools.stack import free_port
from localkube import LocalKube
from tests.support.waiting import wait_for

repo = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
tmp = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="hung-api-"))
tmp.mkdir(parents=True, exist_ok=True)
now = datetime.now(timezone.utc)
ca = generate_ca("m-ca", now=now, valid_for=timedelta(days=1))
leaf = issue_certificate(ca, "m", now=now, valid_for=timedelta(days=1), dns_names=["localhost"], ip_addresses=["127.0.0.1"])
(tmp/"ca.crt").write_bytes(ca.cert_pem); (tmp/"tls.crt").write_bytes(leaf.cert_pem); (tmp/"tls.key").write_bytes(leaf.key_pem)
with LocalKube(tokens={"t": "system:admin"}) as kube:
    kc = kube.write_kubeconfig(tmp/"kubeconfig", token="t"); api = kube.api_client("t")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = "m-" + uuid.uuid4().hex[:6]
    core.create_namespace({"metadata": {"name": ns, "labels": {"netwarden.io/inject": "enabled"}}})
    d = apps.create_namespaced_deployment(ns, {"metadata": {"name": "api"}, "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "api"}}, "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    rs = apps.create_namespaced_replica_set(ns, {"metadata": {"name": "api-5f7c9d8b6", "labels": {"app": "api", "pod-template-hash": "5f7c9d8b6"}, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": d.metadata.uid, "controller": True}]}, "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "api", "pod-template-hash": "5f7c9d8b6"}}, "template": {"metadata": {"labels": {"app": "api", "pod-template-hash": "5f7c9d8b6"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(repo)}; env.pop("NETWARDEN_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "netwarden.webhook.cli", "--cert", str(tmp/"tls.crt"), "--key", str(tmp/"tls.key"), "--host", "127.0.0.1", "--port", str(port), "--kubeconfig", kc, "--workers", "1", "--threads", "4"], cwd=repo, env=env, stdout=open(tmp/"w.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"https://127.0.0.1:{port}"
    wait_for(lambda: requests.get(url + "/readyz", verify=str(tmp/"ca.crt"), timeout=2).status_code == 200,
             "the webhook ready", timeout=90, ignoring=(requests.RequestException,))
    def review():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "api-5f7c9d8b6-", "labels": {"app": "api", "pod-template-hash": "5f7c9d8b6"}, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs.metadata.name, "uid": rs.metadata.uid, "controller": True}]}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": ns, "operation": "CREATE", "userInfo": {"username": "rs-controller"}, "object": pod, "dryRun": False}}
    requests.post(url + "/mutate?timeout=5s", json=review(), verify=str(tmp/"ca.crt"), timeout=60)  # warm: namespace cached
    # a fresh ReplicaSet uid is not cached: use another RS each time
    kube.faults.add(method="GET", path_regex=r"/replicasets/", delay=30.0, times=None)
    kube.faults.add(method="POST", path_regex=r"/networkpolicies", delay=30.0, times=None)
    results = []
    for i in range(3):
        rs = apps.create_namespaced_replica_set(ns, {"metadata": {"name": f"api-{i}abc", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": d.metadata.uid, "controller": True}]}, "spec": {"replicas": 0, "selector": {"matchLabels": {"x": str(i)}}, "template": {"metadata": {"labels": {"x": str(i)}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
        t = time.monotonic(); r = requests.post(url + "/mutate?timeout=5s", json=review(), verify=str(tmp/"ca.crt"), timeout=60); el = time.monotonic() - t
        results.append((round(el, 2), r.status_code, r.json()["response"]["allowed"]))
    print(json.dumps({"repo": str(repo), "latency_s_status_allowed": results}))
    kube.faults.clear(); os.killpg(proc.pid, 15); proc.wait(10)
