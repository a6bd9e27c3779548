"""One error tree: every exception class netwarden defines derives from NetwardenError.

A caller (the CLI's one-line start-up failure, a signal receiver counting rejects, an operator's
script) can then tell netwarden's own refusals from a bug by catching one root; the classes keep
their builtin bases (ValueError, RuntimeError...) so older `except ValueError` callers still work.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import netwarden
from netwarden.model.errors import NetwardenError


def netwarden_exception_classes() -> list[type[BaseException]]:
    """Every exception class defined (not merely imported) in a netwarden module."""
    found = []
    for module_info in pkgutil.walk_packages(netwarden.__path__, "netwarden."):
        if module_info.name.endswith("_pb2") or module_info.name.endswith("_pb2_grpc"):
            continue
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found.append(value)
    return found


def test_every_error_netwarden_defines_is_a_netwarden_error() -> None:
    classes = netwarden_exception_classes()
    assert len(classes) > 15, classes  # the walk found the package's errors, not an empty tree
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, NetwardenError))
    assert not outside, f"errors outside the tree rooted at NetwardenError: {outside}"
