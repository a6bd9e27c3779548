"""netwarden/platform/config.py: one source of options, layered defaults < file < environment < flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from netwarden.platform.config import (
    SECTIONS,
    ConfigError,
    export_to_env,
    load_config,
    options_markdown,
    overrides_from_args,
    section_options,
)
from netwarden.webhook.cli import add_webhook_parser


def test_defaults_then_file_then_environment_then_flags(tmp_path: Path) -> None:
    file = tmp_path / "netwarden.yaml"
    file.write_text("cluster: {dns_service: a/file}\nwebhook: {port: 1111, workers: 3}\n"
                    "reconciler: {cleanup_grace_seconds: 7}\ncore: {tighten_threshold: 12}\n")
    env = {"NETWARDEN_CONFIG": str(file), "NETWARDEN_WEBHOOK_PORT": "2222"}
    config = load_config(env, {"webhook": {"workers": "5"}})
    assert config.cluster.dns_service == "a/file"
    assert config.webhook.port == 2222 and config.webhook.workers == 5
    assert config.webhook.threads == 8
    assert config.reconciler.cleanup_grace_seconds == 7
    assert config.core == {"tighten_threshold": 12}


def test_trusted_usernames_are_comma_separated_in_the_environment() -> None:
    config = load_config({"NETWARDEN_WEBHOOK_TRUSTED_USERNAMES": "a, b,,c"})
    assert config.webhook.trusted_usernames == ("a", "b", "c")


@pytest.mark.parametrize("env", [{"NETWARDEN_WEBHOOK_PORT": "x"}, {"NETWARDEN_DEFAULT_MODE": "yolo"},
                                 {"NETWARDEN_DNS_SERVICE": "kube-dns"}, {"NETWARDEN_WEBHOOK_WORKERS": "0"}])
def test_bad_values_fail_naming_their_source(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    assert "NETWARDEN_" in str(caught.value) or "expected" in str(caught.value)


def test_unknown_option_in_the_file_is_an_error(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("webhook: {prot: 1}\n")
    with pytest.raises(ConfigError, match="prot"):
        load_config({"NETWARDEN_CONFIG": str(file)})


def test_exported_environment_round_trips_to_the_same_config() -> None:
    config = load_config({}, {"webhook": {"port": "9443", "cert": "/c"}, "cluster": {"kubeconfig": "/k"}})
    env: dict[str, str] = {}
    export_to_env(config, env)
    assert load_config(env) == config


def test_webhook_help_lists_every_option_with_its_environment_variable() -> None:
    parser = argparse.ArgumentParser(prog="netwarden")
    add_webhook_parser(parser.add_subparsers())
    help_text = parser._subparsers._group_actions[0].choices["webhook"].format_help()  # type: ignore[union-attr]
    for section in ("webhook", "cluster"):
        for opt in section_options(section):
            assert opt.flag in help_text and opt.env in help_text
    args = parser.parse_args(["webhook", "--cert", "c", "--key", "k", "--port", "1", "--kubeconfig", "kc",
                              "--workers", "1", "--threads", "2"])
    assert overrides_from_args(args) == {"webhook": {"cert": "c", "key": "k", "port": "1", "workers": "1", "threads": "2"},
                                         "cluster": {"kubeconfig": "kc"}}


def test_every_option_has_help_text_and_appears_in_the_readme_table() -> None:
    table = options_markdown()
    for section in SECTIONS:
        for opt in section_options(section):
            assert opt.help and f"`{opt.env}`" in table


def test_the_readme_configuration_table_is_generated_from_the_code() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("<!-- options:begin -->", 1)[1].split("<!-- options:end -->", 1)[0].strip()
    assert section == options_markdown(), "regenerate with: python -m netwarden.platform.config"


def test_unknown_section_or_option_in_the_file_fails_at_start_up(tmp_path: Path) -> None:
    file = tmp_path / "netwarden.yaml"
    file.write_text("reconciler: {anything: 1}\n")
    with pytest.raises(ConfigError, match="unknown option"):
        load_config({"NETWARDEN_CONFIG": str(file)})
    file.write_text("recon: {port: 1}\n")
    with pytest.raises(ConfigError, match="unknown section 'recon'"):
        load_config({"NETWARDEN_CONFIG": str(file)})
