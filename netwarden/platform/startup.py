"""Fresh-start errors: a process that cannot start says what is missing and how to give it, in one line.

Every netwarden command funnels through `run_command`: a `StartupError` becomes
`netwarden <command>: <what is missing>: <how to give it>` on stderr and exit code 2, never a
traceback. Raise it where the missing thing is first noticed (the kubeconfig loader, the
certificate loader, a port that is taken), with the fix in the message.
"""

from __future__ import annotations

import sys
from typing import Callable

from netwarden.model.errors import NetwardenError


class StartupError(NetwardenError, RuntimeError):
    """A process cannot start; the message names what is missing and how to give it."""

    def __init__(self, missing: str, how: str = "") -> None:
        """`how` may be empty when `missing` already says how (a library message that does)."""
        super().__init__(one_line(f"{missing}: {how}" if how else missing))


#: The exit code of a process that could not start (argparse uses 2 for bad usage too).
EXIT_CANNOT_START = 2


def one_line(text: str) -> str:
    """Collapse whitespace (including newlines from library messages) so the error stays one line."""
    return " ".join(str(text).split())


def run_command(prog: str, command: Callable[[], int | None]) -> int:
    """Run a command; a StartupError is one line on stderr and a non-zero exit."""
    try:
        return int(command() or 0)
    except StartupError as exc:
        print(f"{prog}: {exc}", file=sys.stderr, flush=True)
        return EXIT_CANNOT_START
