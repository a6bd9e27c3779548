"""What a user runs, with the real helm against the real kube-apiserver: install, test, upgrade, rollback, uninstall.

helm is built from its pinned Go module (`netwarden controlplane build --component helm`,
tools/helm/go.mod) and talks to KubeControlPlane (RBAC on, real controllers). The Jobs (hooks) and
Deployments helm creates become pods through the real controllers; the kubelet stand-in
(localkube.kubelet.FakeKubelet with tests/chart/pod_runtime.ProcessRuntime) runs each as a local
process, so Helm's hook waits, the certificate hooks, the Deployments' rolling updates and the
webhook's Service routing are the real ones. After each step:

- the webhook answers: a pod CREATE in an opted-in namespace is labelled by it (through the
  Service, TLS and the caBundle the API server verifies with);
- the certificates are valid: the serving certificate is issued by a CA every webhook's caBundle
  holds, names the Service, is unexpired and matches its key;
- netwarden's managed policies are untouched by upgrade and rollback (same resourceVersion);
- the signal token Secret keeps its token (the chart's `lookup`, which only a real helm against a
  real server performs);
- `helm test` runs the chart's test pod (templates/tests/certs-check.yaml: `netwarden certs check`
  on the mounted serving certificate) to Succeeded;
and after `helm uninstall` nothing is left that was not there before but what the chart README
documents: the managed policies, the certificate Secrets and the namespace helm created.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from kubernetes import client

from cryptography.hazmat.primitives.serialization import Encoding

from netwarden.certs import pki
from netwarden.certs.inject import published_ca_bundles
from localkube.controlplane_build import ControlPlaneNotBuilt, find_binaries, find_helm
from localkube.kubelet import FakeKubelet
from netwarden.model import names
from tests.chart.chartkit import CHART_DIR, NAMESPACE, RELEASE, one, render
from tests.chart.install import Release, eventually, host_address
from tests.chart.pod_runtime import ProcessRuntime

pytest.importorskip("helm_python", reason="pip install helm-python-sdk")

PREFIX = f"{RELEASE}-netwarden-"
SHOP = "shop"
#: One light replica of each component (2 cores); the shop namespace enforces, so baselines are written.
VALUES: dict[str, Any] = {"webhook": {"replicas": 1, "workers": 1, "threads": 4}}
#: An upgrade a user makes: new configuration (the pods roll) and new labels on every object.
UPGRADE_VALUES: dict[str, Any] = {**VALUES, "config": {"thresholds": {"tighten": 12}},
                                  "commonLabels": {"example.com/team": "platform"}}
CHART_README = CHART_DIR / "README.md"
#: Left after `helm uninstall`, as charts/netwarden/README.md ("Uninstall, and what it leaves") says:
#: the certificate Secrets (made by the hook Job, not by Helm) and the reconciler's leader Lease
#: (made by the reconciler; found by this test).
DOCUMENTED_LEFTOVERS = {("Secret", NAMESPACE, f"{PREFIX}webhook-tls"), ("Secret", NAMESPACE, f"{PREFIX}webhook-ca"),
                        ("Lease", NAMESPACE, f"{PREFIX}reconciler")}
#: What `--create-namespace` leaves: helm never deletes a namespace; the controllers fill it.
HELM_NAMESPACE = {("Namespace", "", NAMESPACE), ("ServiceAccount", NAMESPACE, "default"),
                  ("ConfigMap", NAMESPACE, "kube-root-ca.crt")}
#: Records that come and go by themselves.
IGNORED_KINDS = {"Event"}
#: The control plane's own (leader elections, apiserver identity): never the chart's.
IGNORED_NAMESPACES = {"kube-system", "kube-node-lease"}

Key = tuple[str, str, str]  # kind, namespace, name


@dataclass
class Helm:
    """The helm CLI with its own home (no ~/.config/helm, ~/.cache/helm) and the admin kubeconfig."""

    binary: Path
    kubeconfig: str
    home: Path

    def __call__(self, *args: str, timeout: float = 180.0) -> str:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home),
               "HELM_CACHE_HOME": str(self.home / "cache"), "HELM_CONFIG_HOME": str(self.home / "config"),
               "HELM_DATA_HOME": str(self.home / "data")}
        result = subprocess.run([str(self.binary), *args, "--kubeconfig", self.kubeconfig], env=env,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def values_file(self, name: str, values: dict[str, Any]) -> str:
        path = self.home / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        return str(path)


@dataclass
class Cluster:
    release: Release
    runtime: ProcessRuntime
    kubelet: FakeKubelet
    helm: Helm

    @property
    def api(self) -> Any:
        return self.release.admin_api()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    try:
        binaries = find_binaries()
        helm_binary = find_helm()
    except ControlPlaneNotBuilt as exc:
        pytest.skip(f"needs the real control plane and helm ({exc})")
    host = host_address()
    if not host:
        pytest.skip("needs a non-loopback address on lo for the EndpointSlices (root and iproute2)")
    from localkube.kube_engine import KubeControlPlane

    plane = KubeControlPlane(binaries, extra_apiserver_args=["--enable-aggregator-routing=true"]).start()
    release = Release(plane, [], tmp_path, {}, engine="kube", host=host)
    runtime = ProcessRuntime(release)
    kubelet = FakeKubelet(plane.api_client(), namespaces=(NAMESPACE, SHOP), runtime=runtime)
    runtime.attach(kubelet)
    (tmp_path / "helm").mkdir()
    helm = Helm(helm_binary, str(plane.write_kubeconfig(tmp_path / "admin.kubeconfig")), tmp_path / "helm")
    try:
        yield Cluster(release, runtime, kubelet, helm)
    finally:
        try:
            kubelet.stop()
        finally:
            try:
                runtime.stop_all()
            finally:
                plane.stop()


# --- what is checked after each step ---------------------------------------------------------------
def webhook_labels(cluster: Cluster, step: str) -> dict[str, str]:
    """A bare pod created in the opted-in namespace, as a user would; its labels (the webhook's work)."""
    core = client.CoreV1Api(cluster.api)
    attempt = 0

    def labelled() -> dict[str, str] | None:
        nonlocal attempt
        attempt += 1
        name = f"probe-{step}-{attempt}"
        pod = core.create_namespaced_pod(SHOP, {"metadata": {"name": name}, "spec": {
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]}})
        core.delete_namespaced_pod(name, SHOP, grace_period_seconds=0)
        labels = pod.metadata.labels or {}
        return labels if names.LABEL_IDENTITY in labels else None  # failurePolicy Ignore: unlabelled while down

    labels = eventually(labelled, f"the webhook to label a pod after {step}", timeout=60)
    assert labels[names.LABEL_IDENTITY] == f"{SHOP}.pod.probe-{step}-{attempt}", labels
    return labels


def check_certificates(cluster: Cluster) -> bytes:
    """Serving certificate issued by a CA in every caBundle, for the Service, unexpired, matching its key."""
    tls = cluster.release.secret_data(f"{PREFIX}webhook-tls")
    admission = client.AdmissionregistrationV1Api(cluster.api)
    configurations = [admission.read_mutating_webhook_configuration(f"{PREFIX}mutate"),
                      admission.read_validating_webhook_configuration(f"{PREFIX}validate")]
    now = datetime.now(timezone.utc)
    assert not pki.is_expired(tls["tls.crt"], now=now)
    assert pki.key_matches_certificate(tls["tls.crt"], tls["tls.key"])
    assert f"{PREFIX}webhook.{NAMESPACE}.svc" in pki.describe(tls["tls.crt"]).dns_names
    for configuration in configurations:
        body = cluster.api.sanitize_for_serialization(configuration)
        bundles = published_ca_bundles(body)
        assert bundles and all(bundles), f"{configuration.metadata.name}: caBundle not set on every webhook"
        for bundle in bundles:
            assert any(pki.is_issued_by(tls["tls.crt"], ca.public_bytes(Encoding.PEM))
                       for ca in pki.load_certificates(bundle)), f"{configuration.metadata.name}: caBundle lacks the CA"
    return tls["tls.crt"]


def managed_policies(cluster: Cluster) -> dict[str, str]:
    """Name -> resourceVersion of the NetworkPolicies netwarden manages for the shop's Deployment."""
    selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE},{names.LABEL_IDENTITY}={SHOP}.deploy.api"
    policies = client.NetworkingV1Api(cluster.api).list_namespaced_network_policy(SHOP, label_selector=selector).items
    return {policy.metadata.name: policy.metadata.resource_version for policy in policies}


def signal_token(cluster: Cluster) -> bytes:
    return cluster.release.secret_data(f"{PREFIX}signal-token")["token"]


def webhook_pods(cluster: Cluster) -> set[str]:
    return {running.name for running in list(cluster.runtime.running.values()) if running.ready
            and running.name.startswith(f"{PREFIX}webhook-")}


def inventory(cluster: Cluster) -> set[Key]:
    """Every object the API server lists (all groups, preferred versions), as (kind, namespace, name)."""
    release = cluster.release
    found: set[Key] = set()
    group_versions = ["api/v1"] + [f"apis/{group['preferredVersion']['groupVersion']}"
                                   for group in release.admin("GET", f"{release.kube.url}/apis").json()["groups"]]
    for group_version in group_versions:
        for resource in release.admin("GET", f"{release.kube.url}/{group_version}").json()["resources"]:
            if "/" in resource["name"] or "list" not in resource.get("verbs", []) or resource["kind"] in IGNORED_KINDS:
                continue
            listed = release.admin("GET", f"{release.kube.url}/{group_version}/{resource['name']}")
            assert listed.status_code == 200, listed.text
            for item in listed.json().get("items") or []:
                found.add((resource["kind"], item["metadata"].get("namespace", ""), item["metadata"]["name"]))
    return found


def ensure_shop(cluster: Cluster) -> None:
    """The opted-in, enforcing namespace with a Deployment whose pods the webhook labels at CREATE."""
    core, apps = client.CoreV1Api(cluster.api), client.AppsV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": SHOP, "labels": {names.LABEL_INJECT: names.INJECT_ENABLED},
                                        "annotations": {names.ANNOTATION_MODE: names.MODE_ENFORCE}}})
    eventually(lambda: [sa for sa in core.list_namespaced_service_account(SHOP).items if sa.metadata.name == "default"],
               "the shop's default ServiceAccount")
    labels = {"app": "api"}
    apps.create_namespaced_deployment(SHOP, {"metadata": {"name": "api"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels},
                     "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]}}}})


# --- the helm test hook (rendered; it runs in the lifecycle below) -----------------------------------
def test_the_helm_test_pod_checks_the_mounted_certificate_without_api_access() -> None:
    pod = one(render(), "Pod", "-test-certs")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    (container,) = spec["containers"]
    assert container["args"][:3] == ["certs", "check", "/etc/netwarden/tls"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and spec["securityContext"]["runAsNonRoot"]
    assert {v["name"]: v.get("secret", {}).get("secretName") for v in spec["volumes"]}["tls"] == f"{PREFIX}webhook-tls"


def test_the_chart_readme_names_what_uninstall_leaves() -> None:
    section = CHART_README.read_text().split("## Uninstall, and what it leaves", 1)[1].split("\n## ", 1)[0]
    for kind, _, name in DOCUMENTED_LEFTOVERS:
        assert f"`<fullname>{name.removeprefix(PREFIX.removesuffix('-'))}`" in section, (kind, name)


# --- the lifecycle ----------------------------------------------------------------------------------
@pytest.mark.kube
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_install_upgrade_rollback_uninstall_with_the_real_helm(cluster: Cluster) -> None:
    helm, core = cluster.helm, client.CoreV1Api(cluster.api)
    before = inventory(cluster)
    started = time.monotonic()
    timings: dict[str, float] = {}

    def timed(step: str, *args: str) -> str:
        began = time.monotonic()
        output = helm(*args)
        timings[step] = time.monotonic() - began
        print(f"helm {step}: {timings[step]:.1f} s (test at {began + timings[step] - started:.1f} s)")
        return output

    # install (pre-install hook: certificate Secrets; post-install hook: caBundle)
    timed("install", "install", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE, "--create-namespace",
          "--values", helm.values_file("install", VALUES), "--timeout", "150s")
    ensure_shop(cluster)
    webhook_labels(cluster, "install")
    api_labels = eventually(lambda: [p.metadata.labels for p in core.list_namespaced_pod(SHOP, label_selector="app=api").items
                                     if names.LABEL_IDENTITY in (p.metadata.labels or {})], "the Deployment's pod labelled")
    assert api_labels[0][names.LABEL_IDENTITY] == f"{SHOP}.deploy.api"
    eventually(lambda: managed_policies(cluster), "the api Deployment's baseline policy")
    serving = check_certificates(cluster)
    token = signal_token(cluster)
    assert len(token) == 48
    pods_at_install = eventually(lambda: webhook_pods(cluster), "a ready webhook pod")
    tested = timed("test", "test", RELEASE, "--namespace", NAMESPACE, "--timeout", "90s")
    assert f"{PREFIX}test-certs" in tested and "Succeeded" in tested, tested

    # upgrade with changed values: hooks again, the pods roll, nothing netwarden or the user owns moves
    policies = managed_policies(cluster)  # as the upgrade finds them (not as first written: what came since is not its doing)
    timed("upgrade", "upgrade", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE,
          "--values", helm.values_file("upgrade", UPGRADE_VALUES), "--timeout", "150s")
    eventually(lambda: webhook_pods(cluster) and not webhook_pods(cluster) & pods_at_install,
               "the webhook Deployment to roll to a new pod")
    webhook_labels(cluster, "upgrade")
    assert signal_token(cluster) == token, "helm upgrade replaced the signal token (lookup did not keep it)"
    assert check_certificates(cluster) == serving, "an upgrade with nothing due must keep the serving certificate"
    assert managed_policies(cluster) == policies, "helm upgrade touched netwarden's managed policies"
    config = core.read_namespaced_config_map(f"{PREFIX}config", NAMESPACE)
    assert config.metadata.labels["example.com/team"] == "platform"
    pods_at_upgrade = webhook_pods(cluster)

    # rollback to the install's revision
    timed("rollback", "rollback", RELEASE, "1", "--namespace", NAMESPACE, "--timeout", "150s")
    eventually(lambda: webhook_pods(cluster) and not webhook_pods(cluster) & pods_at_upgrade,
               "the webhook Deployment to roll back to a new pod")
    webhook_labels(cluster, "rollback")
    assert signal_token(cluster) == token, "helm rollback replaced the signal token"
    check_certificates(cluster)
    assert managed_policies(cluster) == policies, "helm rollback touched netwarden's managed policies"
    config = core.read_namespaced_config_map(f"{PREFIX}config", NAMESPACE)
    assert "example.com/team" not in (config.metadata.labels or {})
    history = json.loads(helm("history", RELEASE, "--namespace", NAMESPACE, "--output", "json"))
    assert [entry["status"] for entry in history] == ["superseded", "superseded", "deployed"], history

    # uninstall: nothing left but what the chart README documents
    timed("uninstall", "uninstall", RELEASE, "--namespace", NAMESPACE, "--timeout", "150s")

    def leftovers(documented: set[Key] | frozenset[Key] = DOCUMENTED_LEFTOVERS) -> set[Key]:
        new = inventory(cluster) - before - HELM_NAMESPACE - documented
        # The shop is the user's: its workload and netwarden's policies for it stay (documented).
        # kube-root-ca.crt is published into every namespace by kube-controller-manager on its own schedule: a
        # cluster started just before the inventory may publish it in default or kube-public after it.
        return {key for key in new if key[1] not in {SHOP, *IGNORED_NAMESPACES} and key != ("Namespace", "", SHOP)
                and key[0::2] != ("ConfigMap", "kube-root-ca.crt")}

    try:
        eventually(lambda: not leftovers(), "everything the release made to be gone", timeout=30)
    except AssertionError:
        raise AssertionError(f"left after helm uninstall, undocumented: {sorted(leftovers())}") from None
    assert managed_policies(cluster) == policies, "the managed policies must stay after uninstall (documented)"
    # The README's clean-up commands remove exactly the rest.
    core.delete_collection_namespaced_secret(NAMESPACE, label_selector="app.kubernetes.io/component=certs")
    client.CoordinationV1Api(cluster.api).delete_namespaced_lease(f"{PREFIX}reconciler", NAMESPACE)
    try:
        eventually(lambda: not leftovers(frozenset()), "nothing left after the README's clean-up", timeout=30)
    except AssertionError:
        raise AssertionError(f"left after the README's clean-up: {sorted(leftovers(frozenset()))}") from None
    assert not [exit for exit in cluster.runtime.exits if exit[1] != 0], cluster.runtime.exits
    print(f"helm lifecycle: {', '.join(f'{step} {seconds:.1f} s' for step, seconds in timings.items())}; "
          f"whole test {time.monotonic() - started:.1f} s")
