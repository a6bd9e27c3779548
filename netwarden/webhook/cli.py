"""`netwarden webhook`: serve the admission webhook with gunicorn over TLS.

The command merges flags over NETWARDEN_* / NETWARDEN_CONFIG (netwarden/platform/config.py), exports the
result as NETWARDEN_* variables so every forked worker builds the same app
(netwarden.webhook.app:create_app_from_environment()), prepares the Prometheus multiprocess directory, and
hands over to netwarden.webhook.serving.serve.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

from netwarden.platform.config import add_section_arguments, export_to_env, load_config, overrides_from_args
from netwarden.model.errors import ConfigError
from netwarden.platform.startup import run_command

APP_FACTORY = "netwarden.webhook.app:create_app_from_environment()"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def add_webhook_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "webhook",
        help="serve the mutating/validating admission webhook (gunicorn, TLS)",
        description=(
            "Serve POST /mutate (labels + baseline NetworkPolicy on pod CREATE), POST /validate "
            "(refuses changes to netwarden.io/* pod labels on UPDATE), GET /healthz, /readyz, /metrics. "
            "Every option can also come from the environment or a YAML file named by NETWARDEN_CONFIG; "
            "flags win over the environment, which wins over the file."
        ),
    )
    add_section_arguments(parser, "webhook")
    add_section_arguments(parser, "cluster")
    parser.set_defaults(func=run_webhook)


def prepare_multiproc_dir() -> str:
    """A clean directory for prometheus_client's per-worker files (stale ones would double-count)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix="netwarden-metrics-")
        os.environ[MULTIPROC_ENV] = path
    return path


def run_webhook(args: argparse.Namespace) -> int:
    try:
        config = load_config(overrides=overrides_from_args(args))
    except ConfigError as exc:
        print(f"netwarden webhook: {exc}", file=sys.stderr)
        return 2
    hook = config.webhook
    if not hook.cert or not hook.key:
        print("netwarden webhook: --cert and --key are required (or NETWARDEN_WEBHOOK_CERT / _KEY)", file=sys.stderr)
        return 2
    # Every worker builds its API client from the same settings: refuse here, in one line, rather than
    # let each worker die with a traceback (no kubeconfig, no in-cluster configuration).
    from netwarden.platform.kube import load_api_client

    load_api_client(config.cluster.kubeconfig)
    export_to_env(config)
    prepare_multiproc_dir()
    from netwarden.webhook.serving import serve

    serve(
        APP_FACTORY,
        cert=hook.cert,
        key=hook.key,
        bind=f"{hook.host}:{hook.port}",
        workers=hook.workers,
        threads=hook.threads,
        timeout=hook.timeout,
        keepalive=hook.keepalive,
        max_request_body=hook.max_request_body,
        reload_interval=hook.reload_interval,
        extra_ca=hook.client_ca,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m netwarden.webhook.cli [webhook options]`: the same command without the other subcommands."""
    parser = argparse.ArgumentParser(prog="netwarden")
    add_webhook_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["webhook", *(sys.argv[1:] if argv is None else argv)])
    return run_command("netwarden webhook", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
