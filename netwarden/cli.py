"""The `netwarden` command. Each package registers its own subcommands here; this file only wires."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from netwarden import __version__

#: (module, function) pairs that add subcommands; a function takes the subparsers object.
REGISTRATIONS: tuple[tuple[str, str], ...] = (
    ("localkube.cli", "add_local_cluster_parser"),
    ("certs.cli", "add_certs_parser"),
    ("localkube.controlplane_build", "add_controlplane_parser"),
    ("webhook.cli", "add_webhook_parser"),
    ("reconciler.cli", "add_reconciler_parser"),
    ("reconciler.scaleout.cli", "add_scaleout_parser"),
    ("netwarden.demo", "add_demo_parser"),
    ("netwarden.replay", "add_replay_parser"),
    ("netwarden.report_cmd", "add_report_parser"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netwarden",
        description="Adaptive network access control for Kubernetes: identity labels and baseline NetworkPolicies "
                    "at admission; policies that tighten, quarantine, relax and roll back with runtime signals.",
        epilog="Start with `netwarden demo`: the whole story on an embedded local API server.")
    parser.add_argument("--version", action="version", version=f"netwarden {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, function_name in REGISTRATIONS:
        register: Callable[[argparse._SubParsersAction], None] = getattr(importlib.import_module(module_name), function_name)
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    from netwarden.startup import run_command

    return run_command(f"netwarden {args.command}", lambda: func(args))


if __name__ == "__main__":
    sys.exit(main())
