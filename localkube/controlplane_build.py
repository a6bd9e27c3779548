"""Build (once) and locate the real upstream control plane: etcd, kube-apiserver, kube-controller-manager.

The versions are pinned in `tools/controlplane/go.mod`; sources come from the Go module proxy and
the binaries go to a cache outside the source tree,
`${NETWARDEN_CACHE:-~/.cache/netwarden}/controlplane/<k8s-version>-<etcd-version>/bin/`,
so nothing upstream is ever committed. A binary that is present and reports the pinned version
is not rebuilt, which makes a second `netwarden controlplane build` take about a second.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

#: The pins; `tools/controlplane/go.mod` must require exactly these (checked before every build).
KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.4"

#: Where go.mod lives (only in a source checkout; an installed wheel can use a cache but not build).
GO_MODULE_DIR = Path(__file__).resolve().parent.parent / "tools" / "controlplane"

#: Seconds between "still building" lines, so a 10-minute compile does not look hung.
HEARTBEAT_SECONDS = 30.0

Progress = Callable[[str], None]


class ControlPlaneNotBuilt(RuntimeError):
    """The binaries are missing; the message says which command builds them."""


class ControlPlaneBuildError(RuntimeError):
    """`go build` failed, or a built binary does not report the pinned version."""


@dataclass(frozen=True)
class Component:
    """One binary: the Go package it is built from and how it states its version."""

    name: str
    package: str
    version_args: tuple[str, ...]
    version_pattern: str  # regex with one group: the version as reported, without a leading "v"


@dataclass(frozen=True)
class ControlPlaneBinaries:
    """Absolute paths of the three binaries and the versions they were built at."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubernetes_version: str
    etcd_version: str

    @property
    def bin_dir(self) -> Path:
        return self.kube_apiserver.parent

    def paths(self) -> dict[str, Path]:
        return {
            "etcd": self.etcd,
            "kube-apiserver": self.kube_apiserver,
            "kube-controller-manager": self.kube_controller_manager,
        }

    def missing(self) -> list[str]:
        return [name for name, path in self.paths().items() if not os.access(path, os.X_OK)]


COMPONENTS: tuple[Component, ...] = (
    Component("etcd", "go.etcd.io/etcd/server/v3", ("--version",), r"etcd Version:\s*v?(\S+)"),
    Component("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", ("--version",), r"Kubernetes\s+v?(\S+)"),
    Component(
        "kube-controller-manager",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        ("--version",),
        r"Kubernetes\s+v?(\S+)",
    ),
)

BUILD_COMMAND = "netwarden controlplane build   (or: python -m localkube.controlplane_build build)"


# --- pure helpers -------------------------------------------------------------------------------


def cache_root(environ: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """`$NETWARDEN_CACHE` or `~/.cache/netwarden`: shared by every checkout on the machine."""
    configured = environ.get("NETWARDEN_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "netwarden"


def bin_dir(cache_dir: Path | None = None) -> Path:
    """The versioned directory holding the binaries; a new pin gets a new directory."""
    root = cache_dir if cache_dir is not None else cache_root()
    return root / "controlplane" / f"{KUBERNETES_VERSION}-{ETCD_VERSION}" / "bin"


def expected_binaries(cache_dir: Path | None = None) -> ControlPlaneBinaries:
    """Where the binaries are (or will be); they may not exist yet."""
    directory = bin_dir(cache_dir)
    return ControlPlaneBinaries(
        etcd=directory / "etcd",
        kube_apiserver=directory / "kube-apiserver",
        kube_controller_manager=directory / "kube-controller-manager",
        kubernetes_version=KUBERNETES_VERSION,
        etcd_version=ETCD_VERSION,
    )


def pinned_versions(go_mod_text: str) -> dict[str, str]:
    """Module path -> version for the `require` lines of a go.mod (single lines and blocks)."""
    versions: dict[str, str] = {}
    in_block = False
    for raw in go_mod_text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if line.startswith("require ("):
            in_block = True
            continue
        if in_block and line == ")":
            in_block = False
            continue
        if line.startswith("require "):
            line = line[len("require ") :].strip()
        elif not in_block:
            continue
        parts = line.split()
        if len(parts) == 2:
            versions[parts[0]] = parts[1]
    return versions


def staging_replacements(go_mod_text: str) -> dict[str, str]:
    """k8s.io staging module -> version it is replaced with (`k8s.io/x => k8s.io/x v0.N.M`)."""
    pattern = re.compile(r"^\s*(k8s\.io/\S+)\s*=>\s*(k8s\.io/\S+)\s+(v\S+)\s*$", re.MULTILINE)
    return {m.group(1): m.group(3) for m in pattern.finditer(go_mod_text) if m.group(1) == m.group(2)}


def staging_version(kubernetes_version: str) -> str:
    """k8s.io/kubernetes v1.N.M publishes its staging modules (client-go, apiserver, ...) as v0.N.M."""
    major, minor, patch = kubernetes_version.lstrip("v").split(".")
    if major != "1":
        raise ValueError(f"unexpected Kubernetes version {kubernetes_version}")
    return f"v0.{minor}.{patch}"


def check_go_mod(go_mod_text: str) -> list[str]:
    """Why go.mod disagrees with the Python pins (empty when they agree)."""
    problems = []
    required = pinned_versions(go_mod_text)
    for module, version in (("k8s.io/kubernetes", KUBERNETES_VERSION), ("go.etcd.io/etcd/server/v3", ETCD_VERSION)):
        if required.get(module) != version:
            problems.append(f"go.mod requires {module} {required.get(module)}, the pin is {version}")
    staging = staging_version(KUBERNETES_VERSION)
    for module, version in staging_replacements(go_mod_text).items():
        if version != staging:
            problems.append(f"go.mod replaces {module} with {version}, expected {staging}")
    return problems


def version_ldflags(kubernetes_version: str) -> str:
    """-X settings so `kube-apiserver --version` reports the pin instead of the v0.0.0 default."""
    major, minor, _ = kubernetes_version.lstrip("v").split(".")
    values = {
        "gitVersion": kubernetes_version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
    }
    settings = [
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in values.items()
    ]
    return " ".join(["-s", "-w", *settings])


def expected_version(component: Component) -> str:
    return (ETCD_VERSION if component.name == "etcd" else KUBERNETES_VERSION).lstrip("v")


def parse_version(component: Component, output: str) -> str | None:
    match = re.search(component.version_pattern, output)
    return match.group(1) if match else None


# --- adapters (processes, files) ----------------------------------------------------------------


def reported_version(component: Component, binary: Path) -> str | None:
    """What the binary says its version is, or None if it is missing or will not say."""
    if not os.access(binary, os.X_OK):
        return None
    try:
        result = subprocess.run(
            [str(binary), *component.version_args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_version(component, result.stdout + result.stderr)


def find_binaries(cache_dir: Path | None = None) -> ControlPlaneBinaries:
    """The cached binaries, or ControlPlaneNotBuilt naming the build command."""
    binaries = expected_binaries(cache_dir)
    missing = binaries.missing()
    if missing:
        raise ControlPlaneNotBuilt(
            f"the upstream control plane ({KUBERNETES_VERSION}, etcd {ETCD_VERSION}) is not built: "
            f"{', '.join(missing)} missing in {binaries.bin_dir}. Build it once (4-15 minutes "
            f"on 2 cores, cached afterwards) with:\n    {BUILD_COMMAND}"
        )
    return binaries


def go_binary() -> str:
    """$NETWARDEN_GO, else `go` on PATH, else the standard /usr/local/go install."""
    candidates = [os.environ.get("NETWARDEN_GO"), shutil.which("go"), "/usr/local/go/bin/go"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ControlPlaneBuildError("no Go toolchain found: install Go >= 1.24 or set NETWARDEN_GO")


def _run_go_build(
    go: str, component: Component, output: Path, progress: Progress, *, nice: int,
    module_dir: Path = GO_MODULE_DIR, ldflags: str | None = None,
) -> None:
    """`go build -o` into a temporary name, then rename: a killed build never leaves a half binary."""
    partial = output.with_name(output.name + ".partial")
    if ldflags is None:
        ldflags = version_ldflags(KUBERNETES_VERSION) if component.name != "etcd" else "-s -w"
    command = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), component.package]
    if nice and shutil.which("nice"):
        command = ["nice", "-n", str(nice), *command]
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly").strip()
    started = time.monotonic()
    # go build is silent until it fails: collect its output in a file, print a heartbeat meanwhile.
    with tempfile.TemporaryFile() as output_file:
        process = subprocess.Popen(command, cwd=module_dir, env=env, stdout=output_file, stderr=subprocess.STDOUT)
        next_heartbeat = started + HEARTBEAT_SECONDS
        try:
            while process.poll() is None:
                now = time.monotonic()
                if now >= next_heartbeat:
                    progress(f"  ... still building {component.name} ({now - started:.0f} s)")
                    next_heartbeat = now + HEARTBEAT_SECONDS
                time.sleep(0.5)
        except BaseException:
            process.kill()
            process.wait()
            partial.unlink(missing_ok=True)
            raise
        output_file.seek(0)
        text = output_file.read().decode(errors="replace").strip()
    if process.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ControlPlaneBuildError(
            f"building {component.name} failed (exit {process.returncode}):\n"
            f"  cd {module_dir} && {' '.join(command)}\n{text[-4000:]}"
        )
    partial.replace(output)
    progress(f"  built {component.name} in {time.monotonic() - started:.0f} s")


def build(
    cache_dir: Path | None = None,
    progress: Progress = print,
    *,
    force: bool = False,
    nice: int = 10,
) -> ControlPlaneBinaries:
    """Build whatever is missing or stale, verify every binary's version, return the paths.

    Idempotent: a binary that exists and reports the pinned version is kept (unless `force`).
    """
    binaries = expected_binaries(cache_dir)
    binaries.bin_dir.mkdir(parents=True, exist_ok=True)
    paths = binaries.paths()
    progress(
        f"control plane: Kubernetes {KUBERNETES_VERSION}, etcd {ETCD_VERSION} -> {binaries.bin_dir}"
    )
    todo = []
    for component in COMPONENTS:
        have = None if force else reported_version(component, paths[component.name])
        if have == expected_version(component):
            progress(f"  {component.name}: {have} already built, skipping")
        else:
            todo.append(component)
    if todo:
        go_mod = GO_MODULE_DIR / "go.mod"
        if not go_mod.is_file():
            raise ControlPlaneBuildError(
                f"{go_mod} not found: building needs a source checkout of netwarden"
            )
        problems = check_go_mod(go_mod.read_text())
        if problems:
            raise ControlPlaneBuildError("tools/controlplane/go.mod disagrees with the pins: " + "; ".join(problems))
        go = go_binary()
        progress(f"  using {go} ({_go_version(go)}); modules come from the Go proxy; a cold build takes ~4-15 minutes")
        for index, component in enumerate(todo, start=1):
            progress(f"[{index}/{len(todo)}] building {component.name} from {component.package}")
            _run_go_build(go, component, paths[component.name], progress, nice=nice)
    for component in COMPONENTS:
        have = reported_version(component, paths[component.name])
        if have != expected_version(component):
            raise ControlPlaneBuildError(
                f"{paths[component.name]} reports version {have!r}, expected {expected_version(component)}"
            )
    progress("control plane ready: " + ", ".join(f"{c.name} {expected_version(c)}" for c in COMPONENTS))
    return binaries


def _go_version(go: str) -> str:
    try:
        return subprocess.run([go, "version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown go version"


# --- helm: the CLI users install the chart with, from its own pinned module --------------------

#: Pinned in `tools/helm/go.mod` (checked before every build); its own module, so helm's newer
#: client-go never moves the control plane's module graph.
HELM_VERSION = "v4.3.2"
HELM_MODULE = "helm.sh/helm/v4"
HELM_MODULE_DIR = GO_MODULE_DIR.parent / "helm"
HELM = Component("helm", f"{HELM_MODULE}/cmd/helm", ("version", "--template", "{{.Version}}"), r"v?(\d+\.\d+\.\d+\S*)")
HELM_BUILD_COMMAND = "netwarden controlplane build --component helm"


class HelmNotBuilt(ControlPlaneNotBuilt):
    """The helm binary is missing; the message says which command builds it."""


def helm_path(cache_dir: Path | None = None) -> Path:
    """`<cache>/helm/<version>/bin/helm`: a new pin gets a new directory."""
    root = cache_dir if cache_dir is not None else cache_root()
    return root / "helm" / HELM_VERSION / "bin" / "helm"


def check_helm_go_mod(go_mod_text: str) -> list[str]:
    """Why tools/helm/go.mod disagrees with HELM_VERSION (empty when they agree)."""
    have = pinned_versions(go_mod_text).get(HELM_MODULE)
    return [] if have == HELM_VERSION else [f"go.mod requires {HELM_MODULE} {have}, the pin is {HELM_VERSION}"]


def helm_ldflags() -> str:
    """helm reports only "v4.3" unless its internal version variable is set at link time."""
    return f"-s -w -X {HELM_MODULE}/internal/version.version={HELM_VERSION} -X {HELM_MODULE}/internal/version.gitTreeState=clean"


def find_helm(cache_dir: Path | None = None) -> Path:
    """The cached helm binary, or HelmNotBuilt naming the build command."""
    path = helm_path(cache_dir)
    if not os.access(path, os.X_OK):
        raise HelmNotBuilt(f"helm {HELM_VERSION} is not built: {path} missing. Build it once (about 2-4 minutes "
                           f"on 2 cores, cached afterwards) with:\n    {HELM_BUILD_COMMAND}")
    return path


def build_pinned_tool(component: Component, path: Path, version: str, module_dir: Path, *, pin_problems: list[str],
                      ldflags: str, progress: Progress, force: bool, nice: int) -> Path:
    """Build a tool from its own pinned module (tools/<name>) unless the cached binary reports `version`;
    verify the version either way. `pin_problems` says why go.mod disagrees with the pin (empty: agrees)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    expected = version.lstrip("v")
    have = None if force else reported_version(component, path)
    if have == expected:
        progress(f"  {component.name}: {have} already built, skipping")
    else:
        go_mod = module_dir / "go.mod"
        if not go_mod.is_file():
            raise ControlPlaneBuildError(f"{go_mod} not found: building needs a source checkout of netwarden")
        if pin_problems:
            raise ControlPlaneBuildError(f"{go_mod} disagrees with the pin: " + "; ".join(pin_problems))
        progress(f"building {component.name} {version} from {module_dir.name}/{component.package} -> {path}")
        _run_go_build(go_binary(), component, path, progress, nice=nice, module_dir=module_dir, ldflags=ldflags)
    have = reported_version(component, path)
    if have != expected:
        raise ControlPlaneBuildError(f"{path} reports version {have!r}, expected {expected}")
    progress(f"{component.name} ready: {expected}")
    return path


def build_helm(cache_dir: Path | None = None, progress: Progress = print, *, force: bool = False, nice: int = 10) -> Path:
    """Build helm unless the cached binary reports the pin; verify the version either way."""
    go_mod = HELM_MODULE_DIR / "go.mod"
    return build_pinned_tool(HELM, helm_path(cache_dir), HELM_VERSION, HELM_MODULE_DIR,
                             pin_problems=check_helm_go_mod(go_mod.read_text()) if go_mod.is_file() else [],
                             ldflags=helm_ldflags(), progress=progress, force=force, nice=nice)


# --- hubble-replay: the real Hubble observer server, serving flows from a file -----------------

#: The cilium module `tools/hubble/go.mod` requires (checked before every build): its
#: pkg/hubble/observer is the GetFlows server behind every agent and Hubble Relay.
CILIUM_VERSION = "v1.20.2"
CILIUM_MODULE = "github.com/cilium/cilium"
HUBBLE_MODULE_DIR = GO_MODULE_DIR.parent / "hubble"
HUBBLE = Component("hubble-replay", ".", ("--version",), r"cilium v?(\S+)")
HUBBLE_BUILD_COMMAND = "netwarden controlplane build --component hubble"


def hubble_path(cache_dir: Path | None = None) -> Path:
    """`<cache>/hubble-replay/<cilium version>/bin/hubble-replay`."""
    root = cache_dir if cache_dir is not None else cache_root()
    return root / "hubble-replay" / CILIUM_VERSION / "bin" / "hubble-replay"


def find_hubble(cache_dir: Path | None = None) -> Path | None:
    """The cached hubble-replay reporting the pinned cilium, else None."""
    path = hubble_path(cache_dir)
    return path if reported_version(HUBBLE, path) == CILIUM_VERSION.lstrip("v") else None


def build_hubble(cache_dir: Path | None = None, progress: Progress = print, *, force: bool = False,
                 nice: int = 10) -> Path:
    """Build tools/hubble unless the cached binary reports the pinned cilium; verify either way."""
    go_mod = HUBBLE_MODULE_DIR / "go.mod"
    pinned = pinned_versions(go_mod.read_text()).get(CILIUM_MODULE) if go_mod.is_file() else CILIUM_VERSION
    problems = [] if pinned == CILIUM_VERSION else [f"go.mod requires {CILIUM_MODULE} {pinned}, the pin is {CILIUM_VERSION}"]
    return build_pinned_tool(HUBBLE, hubble_path(cache_dir), CILIUM_VERSION, HUBBLE_MODULE_DIR, pin_problems=problems,
                             ldflags="-s -w", progress=progress, force=force, nice=nice)


# --- CLI ----------------------------------------------------------------------------------------


def _build_command(args: argparse.Namespace) -> int:
    started = time.monotonic()
    components = args.component or ["controlplane", "enforcer", "helm", "hubble"]
    progress = lambda line: print(line, flush=True)  # noqa: E731
    try:
        if "controlplane" in components:
            binaries = build(args.cache_dir, progress=progress, force=args.force, nice=args.nice)
            print(f"control plane done in {time.monotonic() - started:.1f} s; binaries in {binaries.bin_dir}")
        if "enforcer" in components and not args.skip_enforcer:  # the kube tier's packet tests run it
            from localkube import enforcer_build

            enforcer = enforcer_build.build(args.cache_dir, progress=progress, force=args.force, nice=args.nice)
            print(f"enforcer done in {time.monotonic() - started:.1f} s: {enforcer.path}")
        if "helm" in components:
            helm = build_helm(args.cache_dir, progress=progress, force=args.force, nice=args.nice)
            print(f"helm done in {time.monotonic() - started:.1f} s: {helm}")
        if "kafka" in components:  # only when asked: the scale-out mode's broker (tools/kafka/pom.xml)
            from localkube import kafka_build

            kafka = kafka_build.build(args.cache_dir, progress=progress, force=args.force)
            print(f"kafka done in {time.monotonic() - started:.1f} s: {kafka.libs}")
        if "hubble" in components:
            hubble = build_hubble(args.cache_dir, progress=progress, force=args.force, nice=args.nice)
            print(f"hubble-replay done in {time.monotonic() - started:.1f} s: {hubble}")
    except (ControlPlaneBuildError, ControlPlaneNotBuilt) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _where_command(args: argparse.Namespace) -> int:
    try:
        binaries = find_binaries(args.cache_dir)
    except ControlPlaneNotBuilt as exc:
        print(str(exc), file=sys.stderr)
        return 1
    for name, path in binaries.paths().items():
        print(f"{name}\t{path}")
    from localkube import enforcer_build

    enforcer = enforcer_build.verified(args.cache_dir)
    print(f"kube-network-policies\t{enforcer.path if enforcer else '(not built)'}")
    if os.access(helm_path(args.cache_dir), os.X_OK):
        print(f"helm\t{helm_path(args.cache_dir)}")
    if os.access(hubble_path(args.cache_dir), os.X_OK):
        print(f"hubble-replay\t{hubble_path(args.cache_dir)}")
    return 0


def add_controlplane_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `netwarden controlplane build|where`."""
    parser = subparsers.add_parser(
        "controlplane",
        help="build or locate the real upstream control plane (etcd, kube-apiserver, kube-controller-manager) and helm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="controlplane_command", metavar="ACTION")
    build_parser = commands.add_parser("build", help="build the pinned binaries into the cache (skips what is done)")
    build_parser.add_argument("--cache-dir", type=Path, default=None, help="cache root (default: $NETWARDEN_CACHE or ~/.cache/netwarden)")
    build_parser.add_argument("--force", action="store_true", help="rebuild even when the cached binaries are current")
    build_parser.add_argument("--nice", type=int, default=10, help="niceness of the go build (default 10; 0 to disable)")
    build_parser.add_argument("--skip-enforcer", action="store_true",
                              help="do not build the NetworkPolicy enforcer (kube-network-policies, tools/knp)")
    build_parser.add_argument("--component", action="append", choices=("controlplane", "enforcer", "helm", "hubble", "kafka"),
                              help="build only this (repeatable; default: the control plane, the enforcer "
                                   "(tools/knp/go.mod), helm (tools/helm/go.mod) and hubble, the real Hubble "
                                   "observer server fed from a file (tools/hubble/go.mod, for tests/sources); "
                                   "kafka (tools/kafka/pom.xml, Maven) only when named)")
    build_parser.set_defaults(func=_build_command)
    where_parser = commands.add_parser("where", help="print the paths of the cached binaries (exit 1 if not built)")
    where_parser.add_argument("--cache-dir", type=Path, default=None)
    where_parser.set_defaults(func=_where_command)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localkube.controlplane_build")
    add_controlplane_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["controlplane", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
