"""`python -m localkube` / `netwarden local-cluster`: run the local API server in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from localkube.server import LocalKube


def run_local_cluster(port: int | None, kubeconfig: str | None, https: bool = False) -> int:
    """Serve until SIGINT/SIGTERM; prints the kubeconfig path. Returns a process exit code."""
    with LocalKube(port=port or 0, https=https) as kube:
        serve_until_signalled(f"localkube listening on {kube.url}", kube.write_kubeconfig(kubeconfig))
    print("localkube stopped", flush=True)
    return 0


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
        print(str(exc), file=sys.stderr)
        return 2
    with plane:
        path = plane.write_kubeconfig(kubeconfig) if kubeconfig else str(plane.kubeconfig)
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
    parser.set_defaults(func=lambda args: run_kube_cluster(args.kubeconfig) if args.engine == "kube"
                        else run_local_cluster(args.port, args.kubeconfig, https=args.https))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localkube", description="Run netwarden's local Kubernetes API server.")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--kubeconfig", default=None, help="where to write the kubeconfig (default: a temp file)")
    parser.add_argument("--https", action="store_true", help="serve HTTPS with a generated self-signed CA")
    parser.add_argument("--engine", choices=("local", "kube"), default="local",
                        help="local: this in-process server; kube: real etcd + kube-apiserver + kube-controller-manager")
    args = parser.parse_args(argv)
    if args.engine == "kube":
        return run_kube_cluster(args.kubeconfig)
    return run_local_cluster(args.port, args.kubeconfig, https=args.https)


if __name__ == "__main__":
    sys.exit(main())
