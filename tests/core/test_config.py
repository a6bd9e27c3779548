from __future__ import annotations

import pytest
import yaml

from netwarden.model import names
from netwarden.model.errors import ConfigError
from netwarden.reconciler.core.config import CoreConfig


def test_defaults_are_valid_and_protect_the_cluster_namespaces() -> None:
    config = CoreConfig()
    assert {"kube-system", "kube-public", "kube-node-lease", "netwarden"} <= set(config.protected_namespaces)
    assert config.relax_threshold < config.tighten_threshold <= config.quarantine_threshold
    assert config.default_mode in names.MODES


def test_yaml_mapping_overrides_only_what_it_names() -> None:
    text = """
    learning_seconds: 600
    rate_spike_z: 3
    protected_namespaces: [kube-system, payments]
    falco_priority_weights: {warning: 9}
    default_mode: enforce
    """
    config = CoreConfig.from_mapping(yaml.safe_load(text))
    assert config.learning_seconds == 600.0 and isinstance(config.learning_seconds, float)
    assert config.rate_spike_z == 3.0
    assert config.protected_namespaces == ("kube-system", "payments")
    assert config.falco_priority_weights["warning"] == 9.0
    assert config.falco_priority_weights["critical"] == CoreConfig().falco_priority_weights["critical"]
    assert config.default_mode == names.MODE_ENFORCE
    assert config.tighten_threshold == CoreConfig().tighten_threshold


def test_unknown_keys_and_wrong_types_are_all_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        CoreConfig.from_mapping({"learnign_seconds": 5, "max_history": "ten", "write_burst": True})
    message = str(caught.value)
    assert "unknown key 'learnign_seconds'" in message
    assert "max_history: expected an integer" in message
    assert "write_burst: expected an integer" in message


def test_unknown_weight_name_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown name 'severe'"):
        CoreConfig.from_mapping({"falco_priority_weights": {"severe": 3}})


def test_hysteresis_must_hold() -> None:
    with pytest.raises(ConfigError, match="relax_threshold"):
        CoreConfig.from_mapping({"relax_threshold": 12, "tighten_threshold": 10})
    with pytest.raises(ConfigError, match="lift_threshold"):
        CoreConfig(lift_threshold=30.0, quarantine_threshold=25.0)


def test_unknown_mode_and_non_mapping_are_rejected() -> None:
    with pytest.raises(ConfigError, match="default_mode"):
        CoreConfig.from_mapping({"default_mode": "yolo"})
    with pytest.raises(ConfigError, match="must be a mapping"):
        CoreConfig.from_mapping(["learning_seconds"])  # type: ignore[arg-type]
