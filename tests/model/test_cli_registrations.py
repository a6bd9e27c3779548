"""The command table in netwarden/cli.py names the commands each module really adds (a command
built alone imports only its own module, so a wrong name would leave it out)."""

from __future__ import annotations

import argparse
import importlib

from netwarden.cli import REGISTRATIONS, build_parser


def test_each_module_adds_exactly_the_commands_the_table_names() -> None:
    for module_name, function_name, commands in REGISTRATIONS:
        subparsers = argparse.ArgumentParser().add_subparsers()
        getattr(importlib.import_module(module_name), function_name)(subparsers)
        assert tuple(subparsers.choices) == commands, module_name


def test_a_command_parses_alone_as_in_the_whole_parser() -> None:
    argv = ["replay", "--flows", "f.jsonl", "--quiet"]
    alone, whole = build_parser("replay").parse_args(argv), build_parser().parse_args(argv)
    assert {k: v for k, v in vars(alone).items() if k != "func"} == {k: v for k, v in vars(whole).items() if k != "func"}
    assert alone.func is whole.func
