"""The pins in Python and in tools/controlplane/go.mod agree, and the cache layout is what the docs say."""

from __future__ import annotations

from pathlib import Path

import pytest

from localkube import controlplane_build as cb

GO_MOD = cb.GO_MODULE_DIR / "go.mod"


def test_go_mod_requires_exactly_the_python_pins() -> None:
    assert cb.check_go_mod(GO_MOD.read_text()) == []


def test_every_staging_module_kubernetes_depends_on_is_replaced_at_the_matching_v0_release() -> None:
    replaced = cb.staging_replacements(GO_MOD.read_text())
    assert {"k8s.io/api", "k8s.io/apiserver", "k8s.io/client-go", "k8s.io/component-base"} <= set(replaced)
    assert set(replaced.values()) == {cb.staging_version(cb.KUBERNETES_VERSION)}


def test_a_drifted_pin_is_reported() -> None:
    drifted = GO_MOD.read_text().replace(f"k8s.io/kubernetes {cb.KUBERNETES_VERSION}", "k8s.io/kubernetes v1.33.0")
    assert any("k8s.io/kubernetes" in problem for problem in cb.check_go_mod(drifted))


def test_staging_modules_are_versioned_v0_minor_patch() -> None:
    assert cb.staging_version("v1.34.4") == "v0.34.4"
    with pytest.raises(ValueError):
        cb.staging_version("v2.0.0")


def test_version_ldflags_set_git_version_for_component_base_and_client_go() -> None:
    flags = cb.version_ldflags("v1.34.4")
    assert "-X k8s.io/component-base/version.gitVersion=v1.34.4" in flags
    assert "-X k8s.io/client-go/pkg/version.gitMinor=34" in flags


def test_cache_is_versioned_under_netwarden_cache(tmp_path: Path) -> None:
    assert cb.cache_root({"NETWARDEN_CACHE": str(tmp_path)}) == tmp_path
    assert cb.bin_dir(tmp_path) == tmp_path / "controlplane" / f"{cb.KUBERNETES_VERSION}-{cb.ETCD_VERSION}" / "bin"


def test_missing_binaries_error_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(cb.ControlPlaneNotBuilt, match="netwarden controlplane build"):
        cb.find_binaries(tmp_path)


def test_versions_are_parsed_from_real_version_output() -> None:
    etcd, apiserver, _ = cb.COMPONENTS
    assert cb.parse_version(etcd, "etcd Version: 3.6.4\nGit SHA: Not provided\n") == "3.6.4"
    assert cb.parse_version(apiserver, "Kubernetes v1.34.4\n") == "1.34.4"
    assert cb.parse_version(apiserver, "Kubernetes v0.0.0-master+$Format:%H$\n") != "1.34.4"


def test_a_warm_build_skips_binaries_that_report_the_pinned_version(tmp_path: Path) -> None:
    """Fake binaries that print the right version: build() must not need Go at all."""
    directory = cb.bin_dir(tmp_path)
    directory.mkdir(parents=True)
    outputs = {
        "etcd": f"etcd Version: {cb.ETCD_VERSION.lstrip('v')}",
        "kube-apiserver": f"Kubernetes {cb.KUBERNETES_VERSION}",
        "kube-controller-manager": f"Kubernetes {cb.KUBERNETES_VERSION}",
    }
    for name, text in outputs.items():
        script = directory / name
        script.write_text(f"#!/bin/sh\necho '{text}'\n")
        script.chmod(0o755)
    lines: list[str] = []
    binaries = cb.build(tmp_path, progress=lines.append)
    assert binaries.missing() == []
    assert sum("skipping" in line for line in lines) == 3
    assert not any("building" in line for line in lines)


def test_helm_go_mod_requires_the_python_pin_and_builds_the_cli() -> None:
    text = (cb.HELM_MODULE_DIR / "go.mod").read_text()
    assert cb.check_helm_go_mod(text) == []
    assert cb.HELM.package in text  # the `tool` line go build resolves
    assert cb.check_helm_go_mod(text.replace(f"{cb.HELM_MODULE} {cb.HELM_VERSION}", f"{cb.HELM_MODULE} v4.0.0"))


def test_helm_is_cached_per_version_and_reports_the_pin_through_ldflags(tmp_path: Path) -> None:
    assert cb.helm_path(tmp_path) == tmp_path / "helm" / cb.HELM_VERSION / "bin" / "helm"
    assert f"internal/version.version={cb.HELM_VERSION}" in cb.helm_ldflags()
    assert cb.parse_version(cb.HELM, cb.HELM_VERSION) == cb.HELM_VERSION.lstrip("v")
    with pytest.raises(cb.HelmNotBuilt, match="--component helm"):
        cb.find_helm(tmp_path)


def test_a_warm_helm_build_needs_no_go(tmp_path: Path) -> None:
    path = cb.helm_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(f"#!/bin/sh\necho '{cb.HELM_VERSION}'\n")
    path.chmod(0o755)
    lines: list[str] = []
    assert cb.build_helm(tmp_path, progress=lines.append) == path
    assert any("already built" in line for line in lines) and not any("building" in line for line in lines)
