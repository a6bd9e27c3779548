"""`python -m localkube` / `netwarden local-cluster`: run the local API server in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Callable

from localkube.server import LocalKube


class StartupError(RuntimeError):
    """The local cluster cannot start; one line naming what is missing and how to give it.

    localkube's own (it imports nothing of netwarden); `run_command` prints it the way every
    netwarden command prints its own start-up errors: `PROG: what: how`, exit code 2.
    """

    def __init__(self, missing: str, how: str = "") -> None:
        super().__init__(" ".join((f"{missing}: {how}" if how else missing).split()))


def run_command(prog: str, command: Callable[[], int | None]) -> int:
    """Run a command; a StartupError is one line on stderr and exit code 2, never a traceback."""
    try:
        return int(command() or 0)
    except StartupError as exc:
        print(f"{prog}: {exc}", file=sys.stderr, flush=True)
        return 2


def read_token_file(path: str) -> dict[str, str]:
    """kube-apiserver's --token-auth-file format, `token,user[,uid[,"groups"]]` per line (uid and groups
    ignored: the user system:admin is system:masters, every other one system:authenticated)."""
    tokens: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise StartupError(f"cannot read the token file {path} ({exc.strerror or exc})",
                           "give a readable file of token,user lines with --token-auth-file") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        token, _, rest = line.partition(",")
        user = rest.split(",", 1)[0].strip()
        if not token.strip() or not user:
            raise StartupError(f"{path} line {number}: expected token,user", "fix the line") from None
        tokens[token.strip()] = user
    return tokens


def run_local_cluster(port: int | None, kubeconfig: str | None, https: bool = False,
                      token_file: str | None = None) -> int:
    """Serve until SIGINT/SIGTERM; prints the kubeconfig path. Returns a process exit code.

    With `token_file`, requests must bear one of its tokens (the kubeconfig written uses the first)."""
    server = LocalKube(port=port or 0, https=https, tokens=read_token_file(token_file) if token_file else None)
    try:
        server.start()
    except OSError as exc:
        raise StartupError(f"cannot listen on 127.0.0.1:{port or 0} ({exc.strerror or exc})",
                           "choose a free port with --port N, or leave --port unset for any free one") from None
    try:
        serve_until_signalled(f"localkube listening on {server.url}", _written(server.write_kubeconfig, kubeconfig))
    finally:
        server.stop()
    print("localkube stopped", flush=True)
    return 0


def _written(write: Callable[[str | None], str], kubeconfig: str | None) -> str:
    try:
        return write(kubeconfig)
    except OSError as exc:
        raise StartupError(f"cannot write the kubeconfig to {kubeconfig} ({exc.strerror or exc})",
                           "give a writable path with --kubeconfig FILE, or leave it unset for a temporary file") from None


def serve_until_signalled(banner: str, kubeconfig: str) -> None:
    """Print where the cluster is, then block until SIGINT/SIGTERM (restoring the old handlers after)."""
    done = threading.Event()
    print(banner, flush=True)
    print(f"kubeconfig: {kubeconfig}", flush=True)
    print(f"export KUBECONFIG={kubeconfig}", flush=True)
    previous = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(0.5):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_kube_cluster(kubeconfig: str | None) -> int:
    """The real upstream control plane (etcd, kube-apiserver, kube-controller-manager), in the foreground."""
    from localkube.controlplane_build import ControlPlaneNotBuilt
    from localkube.kube_engine import KubeControlPlane

    try:
        plane = KubeControlPlane()
    except ControlPlaneNotBuilt as exc:
        raise StartupError(str(exc)) from None  # its message names the directory and the build command
    with plane:
        path = _written(plane.write_kubeconfig, kubeconfig) if kubeconfig else str(plane.kubeconfig)
        serve_until_signalled(f"kube-apiserver listening on {plane.url} (ready in {plane.startup_seconds:.1f}s)", path)
    print("control plane stopped", flush=True)
    return 0


def add_local_cluster_parser(subparsers: argparse._SubParsersAction) -> None:
    """`netwarden local-cluster`: the embedded API server (default) or the real control plane."""
    parser = subparsers.add_parser("local-cluster", help="run a local Kubernetes API server in the foreground")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one; local engine)")
    parser.add_argument("--kubeconfig", default=None, help="where to write the kubeconfig (default: a temp file)")
    parser.add_argument("--https", action="store_true", help="serve HTTPS with a generated CA (local engine)")
    parser.add_argument("--engine", choices=["local", "kube"], default="local",
                        help="local: netwarden's embedded API server (default, no toolchain needed); "
                             "kube: upstream etcd + kube-apiserver + kube-controller-manager "
                             "(build first: netwarden controlplane build)")
    parser.set_defaults(func=lambda args: run_command(
        "netwarden local-cluster", lambda: run_kube_cluster(args.kubeconfig) if args.engine == "kube"
        else run_local_cluster(args.port, args.kubeconfig, https=args.https)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localkube", description="Run netwarden's local Kubernetes API server.")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--kubeconfig", default=None, help="where to write the kubeconfig (default: a temp file)")
    parser.add_argument("--https", action="store_true", help="serve HTTPS with a generated self-signed CA")
    parser.add_argument("--token-auth-file", default=None,
                        help="bearer tokens, `token,user` per line (kube-apiserver's format; the first is the "
                             "kubeconfig's): without it every request is system:admin (local engine)")
    parser.add_argument("--engine", choices=("local", "kube"), default="local",
                        help="local: this in-process server; kube: real etcd + kube-apiserver + kube-controller-manager")
    args = parser.parse_args(argv)
    if args.engine == "kube":
        return run_command("localkube", lambda: run_kube_cluster(args.kubeconfig))
    return run_command("localkube", lambda: run_local_cluster(args.port, args.kubeconfig, https=args.https,
                                                              token_file=args.token_auth_file))


if __name__ == "__main__":
    sys.exit(main())
