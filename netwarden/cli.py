"""The `netwarden` command. Each package registers its own subcommands here; this file only wires."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Callable, Sequence

from netwarden import __version__

#: (module, function, the commands it adds): a function takes the subparsers object. The command
#: names let `netwarden replay` import only netwarden.tools.replay, not the kubernetes and Kafka clients
#: other commands need (a second of start-up per run; tests/model/test_cli_registrations.py keeps the
#: names true).
REGISTRATIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("localkube.cli", "add_local_cluster_parser", ("local-cluster",)),
    ("netwarden.certs.cli", "add_certs_parser", ("certs",)),
    ("localkube.controlplane_build", "add_controlplane_parser", ("controlplane",)),
    ("netwarden.webhook.cli", "add_webhook_parser", ("webhook",)),
    ("netwarden.reconciler.cli", "add_reconciler_parser", ("reconciler", "status", "explain", "approve", "reject", "rollback")),
    ("netwarden.reconciler.scaleout.cli", "add_scaleout_parser", ("scaleout",)),
    ("netwarden.tools.demo", "add_demo_parser", ("demo",)),
    ("netwarden.tools.replay", "add_replay_parser", ("replay",)),
    ("netwarden.tools.report_cmd", "add_report_parser", ("report",)),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or, given a command's name, only the module that adds it."""
    parser = argparse.ArgumentParser(
        prog="netwarden",
        description="Adaptive network access control for Kubernetes: identity labels and baseline NetworkPolicies "
                    "at admission; policies that tighten, quarantine, relax and roll back with runtime signals.",
        epilog="Start with `netwarden demo`: the whole story on an embedded local API server.")
    parser.add_argument("--version", action="version", version=f"netwarden {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    owners = [r for r in REGISTRATIONS if command in r[2]] or REGISTRATIONS
    for module_name, function_name, _ in owners:
        module = _tool_or_none(module_name)
        if module is not None:
            register: Callable[[argparse._SubParsersAction], None] = getattr(module, function_name)
            register(subparsers)
    return parser


#: Packages the production image ships without (Dockerfile): their commands exist only in a source install.
TOOL_PACKAGES = ("netwarden.tools", "localkube")


def _tool_or_none(module_name: str) -> ModuleType | None:
    """The module that adds a command, or None when it is a tool this installation does not ship."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if module_name.startswith(TOOL_PACKAGES) and (missing.name or "").startswith(TOOL_PACKAGES):
            return None
        raise


def missing_tool(command: str | None) -> str | None:
    """Why `command` is unavailable here (a tool left out of the image), or None."""
    for module_name, _, commands in REGISTRATIONS:
        if command in commands and _tool_or_none(module_name) is None:
            return (f"netwarden {command}: a tool, not shipped in this image ({module_name} is absent); "
                    f"run it from a source install (pip install -e .)")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else list(argv)
    why = missing_tool(given[0] if given else None)
    if why:
        print(why, file=sys.stderr)
        return 2
    parser = build_parser(given[0] if given else None)
    args = parser.parse_args(given)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    from netwarden.platform.startup import run_command

    return run_command(f"netwarden {args.command}", lambda: func(args))


if __name__ == "__main__":
    sys.exit(main())
