"""The enforcer's pin (tools/knp) agrees with Python, and only a binary matching its stamp counts as built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localkube import enforcer_build as eb


def test_go_mod_and_go_sum_pin_the_python_version() -> None:
    assert eb.check_go_mod((eb.GO_MODULE_DIR / "go.mod").read_text()) == []
    sums = (eb.GO_MODULE_DIR / "go.sum").read_text().split("\n")
    assert any(line.startswith(f"{eb.MODULE} {eb.VERSION} h1:") for line in sums)
    assert any(line.startswith(f"{eb.MODULE} {eb.VERSION}/go.mod h1:") for line in sums)


def test_a_drifted_pin_is_reported() -> None:
    drifted = (eb.GO_MODULE_DIR / "go.mod").read_text().replace(eb.VERSION, "v0.7.0")
    assert eb.check_go_mod(drifted) == [f"tools/knp/go.mod requires {eb.MODULE} v0.7.0, the pin is {eb.VERSION}"]


def test_the_patch_is_small_and_changes_only_the_dns_agent() -> None:
    patches = eb.patch_files()
    assert [p.name for p in patches] == ["0001-dnsagent-keep-queue-open-on-rule-failure.patch"]
    text = patches[0].read_text()
    changed = [line for line in text.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(changed) <= 8
    assert {line.split()[1] for line in text.splitlines() if line.startswith("+++")} == \
        {"b/pkg/networkpolicy/dnsagent.go"}


def _fake_build(cache: Path) -> Path:
    directory = eb.build_dir(cache)
    directory.mkdir(parents=True)
    binary = directory / eb.BINARY_NAME
    binary.write_bytes(b"#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    stamp = {"module": eb.MODULE, "version": eb.VERSION, "patch_digest": eb.patch_digest(),
             "sha256": eb._sha256(binary)}
    binary.with_name(binary.name + ".stamp.json").write_text(json.dumps(stamp))
    return binary


def test_a_binary_matching_its_stamp_is_found_and_kept_without_go(tmp_path: Path) -> None:
    binary = _fake_build(tmp_path)
    assert eb.find_enforcer(tmp_path).path == binary
    lines: list[str] = []
    assert eb.build(tmp_path, progress=lines.append).path == binary  # no Go needed: nothing to build
    assert "already built" in lines[0]


def test_a_changed_binary_or_a_missing_stamp_is_not_built(tmp_path: Path) -> None:
    binary = _fake_build(tmp_path)
    binary.write_bytes(b"#!/bin/sh\nexit 1\n")
    assert eb.verified(tmp_path) is None
    with pytest.raises(eb.EnforcerNotBuilt, match="netwarden controlplane build"):
        eb.find_enforcer(tmp_path)
    binary.with_name(binary.name + ".stamp.json").unlink()
    assert eb.verified(tmp_path) is None
