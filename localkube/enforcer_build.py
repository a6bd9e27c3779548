"""Build (once) and locate the pinned NetworkPolicy enforcer the kube tier's packet tests run.

The enforcer is `sigs.k8s.io/kube-network-policies` (NetworkPolicy, and AdminNetworkPolicy /
BaselineAdminNetworkPolicy v1alpha1 behind flags), pinned in `tools/knp/go.mod` + `go.sum`. Its source
comes from the Go module proxy (checked against go.sum), is copied to a scratch directory, patched with
`tools/knp/patches/*.patch` and built there; only the binary and a stamp stay, in
`${NETWARDEN_CACHE:-~/.cache/netwarden}/enforcer/<version>-<patch digest>/`. The binary has no
`--version`, so the stamp records the module version, its go.sum hash, the patch digest and the
binary's sha256; a binary whose stamp disagrees with the pins (or whose bytes changed) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from localkube.controlplane_build import (
    HEARTBEAT_SECONDS,
    ControlPlaneBuildError,
    Progress,
    cache_root,
    go_binary,
    pinned_versions,
)

MODULE = "sigs.k8s.io/kube-network-policies"
VERSION = "v0.8.0"
PACKAGE_DIR = "./cmd"
BINARY_NAME = "kube-network-policies"
GO_MODULE_DIR = Path(__file__).resolve().parent.parent / "tools" / "knp"
PATCH_DIR = GO_MODULE_DIR / "patches"
BUILD_COMMAND = "netwarden controlplane build   (builds the control plane and the enforcer)"


class EnforcerNotBuilt(RuntimeError):
    """The enforcer binary is missing or stale; the message names the build command."""


@dataclass(frozen=True)
class EnforcerBinary:
    """The built enforcer and what it was built from."""

    path: Path
    version: str
    patch_digest: str


def patch_files() -> list[Path]:
    return sorted(PATCH_DIR.glob("*.patch")) if PATCH_DIR.is_dir() else []


def patch_digest(patches: list[Path] | None = None) -> str:
    """sha256 over the patches in order (12 hex digits): a changed patch means a new cache directory."""
    digest = hashlib.sha256()
    for patch in patches if patches is not None else patch_files():
        digest.update(patch.name.encode() + b"\0" + patch.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def check_go_mod(go_mod_text: str) -> list[str]:
    """Why tools/knp/go.mod disagrees with VERSION (empty when it agrees)."""
    have = pinned_versions(go_mod_text).get(MODULE)
    return [] if have == VERSION else [f"tools/knp/go.mod requires {MODULE} {have}, the pin is {VERSION}"]


def build_dir(cache_dir: Path | None = None) -> Path:
    root = cache_dir if cache_dir is not None else cache_root()
    return root / "enforcer" / f"{VERSION}-{patch_digest()}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_path(binary: Path) -> Path:
    return binary.with_name(binary.name + ".stamp.json")


def verified(cache_dir: Path | None = None) -> EnforcerBinary | None:
    """The cached binary when its stamp matches the pins and its bytes; else None."""
    binary = build_dir(cache_dir) / BINARY_NAME
    try:
        stamp = json.loads(_stamp_path(binary).read_text())
    except (OSError, ValueError):
        return None
    if not os.access(binary, os.X_OK):
        return None
    expected = {"module": MODULE, "version": VERSION, "patch_digest": patch_digest()}
    if any(stamp.get(key) != value for key, value in expected.items()) or stamp.get("sha256") != _sha256(binary):
        return None
    return EnforcerBinary(binary, VERSION, stamp["patch_digest"])


def find_enforcer(cache_dir: Path | None = None) -> EnforcerBinary:
    found = verified(cache_dir)
    if found is None:
        raise EnforcerNotBuilt(
            f"the NetworkPolicy enforcer ({MODULE} {VERSION}) is not built in {build_dir(cache_dir)}; "
            f"build it once (~4 minutes on 2 cores, cached afterwards) with:\n    {BUILD_COMMAND}"
        )
    return found


def _go(go: str, args: list[str], cwd: Path, *, nice: int, progress: Progress, what: str) -> str:
    """Run one go command (nice'd), heartbeat while it runs, raise with its output when it fails."""
    command = [go, *args]
    if nice and shutil.which("nice"):
        command = ["nice", "-n", str(nice), *command]
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")
    started = time.monotonic()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        next_heartbeat = started + HEARTBEAT_SECONDS
        try:
            while process.poll() is None:
                if time.monotonic() >= next_heartbeat:
                    progress(f"  ... still {what} ({time.monotonic() - started:.0f} s)")
                    next_heartbeat += HEARTBEAT_SECONDS
                time.sleep(0.5)
        except BaseException:
            process.kill()
            process.wait()
            raise
        output.seek(0)
        text = output.read().decode(errors="replace")
    if process.returncode != 0:
        raise ControlPlaneBuildError(f"{what} failed (exit {process.returncode}):\n  cd {cwd} && "
                                     f"{' '.join(command)}\n{text[-4000:]}")
    return text


def build(cache_dir: Path | None = None, progress: Progress = print, *, force: bool = False,
          nice: int = 10) -> EnforcerBinary:
    """Download (go.sum-checked), patch and build the enforcer unless a verified one is cached."""
    if not force:
        found = verified(cache_dir)
        if found is not None:
            progress(f"  enforcer: {MODULE} {VERSION} (patches {found.patch_digest}) already built, skipping")
            return found
    go_mod = GO_MODULE_DIR / "go.mod"
    if not go_mod.is_file():
        raise ControlPlaneBuildError(f"{go_mod} not found: building needs a source checkout of netwarden")
    problems = check_go_mod(go_mod.read_text())
    if problems:
        raise ControlPlaneBuildError("; ".join(problems))
    go = go_binary()
    started = time.monotonic()
    progress(f"enforcer: {MODULE} {VERSION} + {len(patch_files())} patch(es) -> {build_dir(cache_dir)}")
    info = json.loads(_go(go, ["mod", "download", "-json", MODULE], GO_MODULE_DIR, nice=0, progress=progress,
                          what="downloading the enforcer module"))
    if info.get("Version") != VERSION or not info.get("Dir"):
        raise ControlPlaneBuildError(f"go mod download returned {info.get('Version')!r}, expected {VERSION}: {info}")
    target = build_dir(cache_dir)
    target.mkdir(parents=True, exist_ok=True)
    binary = target / BINARY_NAME
    with tempfile.TemporaryDirectory(prefix="netwarden-knp-src-") as scratch:
        source = Path(scratch) / "src"
        shutil.copytree(info["Dir"], source)
        for path in source.rglob("*"):  # the module cache is read-only; the copy must be patchable
            path.chmod(path.stat().st_mode | 0o200)
        for patch in patch_files():
            result = subprocess.run(["patch", "-p1", "--forward", "--batch", "-i", str(patch)], cwd=source,
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise ControlPlaneBuildError(f"{patch.name} does not apply to {MODULE} {VERSION}:\n"
                                             f"{result.stdout}{result.stderr}")
            progress(f"  applied {patch.name}")
        partial = binary.with_name(binary.name + ".partial")
        _go(go, ["build", "-trimpath", "-ldflags", "-s -w", "-o", str(partial), PACKAGE_DIR], source, nice=nice,
            progress=progress, what="building the enforcer")
    partial.replace(binary)
    stamp = {"module": MODULE, "version": VERSION, "sum": info.get("Sum"), "patch_digest": patch_digest(),
             "patches": [p.name for p in patch_files()], "sha256": _sha256(binary)}
    _stamp_path(binary).write_text(json.dumps(stamp, indent=2) + "\n")
    found = verified(cache_dir)
    if found is None:
        raise ControlPlaneBuildError(f"{binary} does not verify against its stamp right after the build")
    progress(f"  built the enforcer in {time.monotonic() - started:.0f} s")
    return found
