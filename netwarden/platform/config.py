"""netwarden's configuration: one documented source, sections of dataclasses.

Every option is a dataclass field whose metadata carries its help text, so `netwarden <cmd> --help`,
the README table and the error for a bad value all come from the same place. Values are layered:

    defaults  <  YAML file (NETWARDEN_CONFIG)  <  environment (NETWARDEN_*)  <  command-line flags

Environment names: `NETWARDEN_<FIELD>` for the shared `cluster` section, `NETWARDEN_<SECTION>_<FIELD>`
for the others (e.g. NETWARDEN_DNS_SERVICE, NETWARDEN_WEBHOOK_PORT). The YAML file has one mapping
per section: `{cluster: {dns_service: ...}, webhook: {port: 8443}}`; unknown keys are errors, so a
typo fails at start-up instead of being ignored.

Sections: `cluster` (shared), `webhook`, `reconciler`, and `core` (the decision core's tunables, a
mapping validated by netwarden.reconciler.core.config.CoreConfig).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, get_type_hints

import yaml

from netwarden.model import names
from netwarden.model.admin_policy import BACKENDS as QUARANTINE_BACKENDS
from netwarden.model.errors import ConfigError
from netwarden.model.identity import DEFAULT_POD_CREATORS, PodCreators

CONFIG_FILE_ENV = "NETWARDEN_CONFIG"

ENV_PREFIX = "NETWARDEN_"
#: The section whose environment variables carry no section infix.
SHARED_SECTION = "cluster"


def option(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's keyword
    """A config field with help text; tuples are stored as-is (they are immutable)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ClusterConfig:
    """Shared by every netwarden component: how to reach the API, cluster-wide defaults."""

    kubeconfig: str | None = option(
        None, "kubeconfig file; unset: in-cluster service account, else KUBECONFIG / ~/.kube/config")
    dns_service: str = option(
        "kube-system/kube-dns",
        "NAMESPACE/NAME of the cluster DNS Service; its selector becomes the DNS egress rule "
        "(absent: port 53 to anywhere)")
    default_mode: str = option(
        names.DEFAULT_MODE,
        f"mode for namespaces without a {names.ANNOTATION_MODE} annotation: {' | '.join(names.MODES)}")
    pod_creators: tuple[str, ...] = option(
        DEFAULT_POD_CREATORS,
        "comma-separated Kind=username: a pod's controller ownerReference counts for its identity only when "
        "that user created the pod (the kind's controller; *=user for every kind)")

    def creators(self) -> PodCreators:
        """`pod_creators` parsed (checked when the configuration is loaded)."""
        return PodCreators.parse(self.pod_creators)


@dataclass(frozen=True)
class WebhookConfig:
    """The admission webhook: serving, trust, caches and API budgets."""

    cert: str | None = option(None, "PEM serving certificate file (reloaded live when it changes)")
    key: str | None = option(None, "PEM private key file of the serving certificate")
    host: str = option("0.0.0.0", "address to listen on")
    port: int = option(8443, "HTTPS port to listen on")
    workers: int = option(2, "gunicorn worker processes")
    threads: int = option(8, "threads per worker (gthread)")
    timeout: int = option(30, "seconds a worker may spend on one request before gunicorn restarts it")
    #: Longer than typical client idle pools would be wasteful; shorter makes the API server reconnect.
    keepalive: int = option(65, "seconds an idle keep-alive connection stays open")
    #: AdmissionReviews are well under this; etcd's default object limit is 1.5 MiB, reviews carry up to two objects.
    max_request_body: int = option(4 * 1024 * 1024, "largest request body accepted, bytes (413 above)")
    reload_interval: float = option(5.0, "seconds between checks of the certificate files for rotation")
    client_ca: str | None = option(None, "CA bundle to verify API-server client certificates with, when presented")
    trusted_usernames: tuple[str, ...] = option(
        ("system:serviceaccount:netwarden:netwarden-reconciler",
         "system:serviceaccount:netwarden:netwarden-webhook"),
        f"comma-separated usernames allowed to change {names.PREFIX}/* pod labels on UPDATE "
        "(netwarden's own service accounts)")
    policy_writers: tuple[str, ...] = option(
        (), "comma-separated usernames, beside trusted_usernames, allowed to create netwarden's NetworkPolicies and "
            f"change the {names.PREFIX}/* marks on them (operators who run `netwarden rollback`, or `netwarden approve` "
            "with no reconciler)")
    namespace_cache_seconds: float = option(10.0, "how long a namespace's labels/annotations are cached")
    owner_cache_seconds: float = option(60.0, "how long a verified owner chain (ReplicaSet->Deployment, Job->CronJob) is cached")
    workload_cache_seconds: float = option(
        600.0, "how long a workload whose baseline was written (or found) is remembered; one write per workload; at most half of reconciler.cleanup_grace_seconds")
    workload_cache_size: int = option(10000, "most workloads remembered per worker")
    api_timeout_seconds: float = option(
        2.0, "per-call API timeout inside an admission review (every call of a review also ends by its deadline, below the API server's timeout)")
    api_attempts: int = option(2, "API attempts per call inside an admission review (transient errors only)")
    baseline_write: str = option(
        "sync", "when a new workload's baseline is written: sync (inside its first pod's review) or async (just "
        "after the answer; in enforce/approve namespaces under the namespace's admission guard, a deny-all for "
        "netwarden-labelled pods written first, inside the review)")
    ready_probe_seconds: float = option(10.0, "how long a /readyz API reachability result is reused")


@dataclass(frozen=True)
class ReconcilerConfig:
    """The reconciler process: signal receivers, leader election, lifecycle timings.

    The decision core's tunables (thresholds, weights, guard rails) are the `core` section of the same
    file, validated by netwarden.reconciler.core.config.CoreConfig (see its field comments for every key).
    """

    host: str = option("0.0.0.0", "signal receiver address")
    port: int = option(8444, "signal receiver port (HTTPS when cert and key are set)")
    cert: str | None = option(None, "PEM certificate for the signal receiver (reloaded live)")
    key: str | None = option(None, "PEM private key for the signal receiver")
    token_file: str | None = option(
        None, "file holding the bearer token signal senders must present (re-read when it changes)")
    cleanup_grace_seconds: float = option(
        300.0, "how long a workload's policies outlive its last pod (long enough for a rolling update)")
    leader_elect: bool = option(True, "elect a leader through a coordination.k8s.io Lease; only the leader writes")
    lease_namespace: str = option("netwarden", "namespace of the leader Lease (netwarden's own)")
    lease_name: str = option("netwarden-reconciler", "name of the leader Lease")
    max_body_bytes: int = option(8 * 1024 * 1024, "largest signal POST accepted, bytes (413 above)")
    signal_sources: tuple[str, ...] = option(
        ("flows", "falco", "alertmanager"), "signal endpoints served, /signals/<source> (others answer 404)")
    quarantine_backend: str = option(
        "auto", "what holds a quarantine: auto (ClusterNetworkPolicy v1beta1, then v1alpha2, then AdminNetworkPolicy "
                "v1alpha1, as discovery finds them served; else NetworkPolicy) | networkpolicy | adminnetworkpolicy | "
                "clusternetworkpolicy (asked for but not served: NetworkPolicy, logged)")
    admin_policy_priority: int = option(
        10, "priority of the admin-tier quarantine objects, 0 (first) to 1000; keep it before any admin-tier "
            "Accept that must not reopen a quarantine")
    hubble_relay_address: str | None = option(
        None, "HOST:PORT of Hubble Relay (or one agent's Hubble server): stream its flows with Observer.GetFlows "
              "(e.g. hubble-relay.kube-system.svc:443); unset: off")
    hubble_relay_tls_dir: str | None = option(
        None, "folder of a mounted TLS Secret for Hubble Relay: ca.crt verifies Relay, tls.crt + tls.key (when "
              "present) are the client certificate (mTLS); re-read at every connect; unset: plaintext")
    hubble_relay_server_name: str | None = option(
        None, "name Relay's certificate is checked against (Cilium issues *.hubble-relay.cilium.io); unset: the host")
    goldmane_address: str | None = option(
        None, "HOST:PORT of Calico's Goldmane: List the last minute, then stream Flows.Stream "
              "(e.g. goldmane.calico-system.svc:7443); unset: off")
    goldmane_tls_dir: str | None = option(
        None, "folder of a mounted TLS Secret for Goldmane (ca.crt, tls.crt, tls.key: Goldmane requires mTLS); unset: plaintext")
    goldmane_server_name: str | None = option(
        None, "name Goldmane's certificate is checked against; unset: the host")
    stream_buffer: int = option(
        10000, "flows a gRPC source holds while the engine is busy; past it the oldest are dropped and counted")
    state_shards: int = option(
        16, "Secrets netwarden-state-0..N-1 (in lease_namespace) the leader keeps learned baselines and risk in, "
            "so a new leader or a restart does not learn again; 0 keeps them in memory only")
    state_checkpoint_seconds: float = option(30.0, "how often the leader saves learned state (and when it steps down)")
    role: str = option(
        "single", "single: one leader learns and decides (the default) | ingest: receive, attribute and fold "
                  "flows, produce them to Kafka | decide: a consumer group member deciding for the workloads of its "
                  "partitions (both need kafka_brokers; netwarden/reconciler/scaleout)")
    kafka_brokers: str | None = option(None, "Kafka bootstrap servers, HOST:PORT[,HOST:PORT] (roles ingest and decide)")
    kafka_partitions: int = option(12, "partitions of both topics; a workload's partition is crc32(identity) mod this")
    kafka_observations_topic: str = option("netwarden.observations", "topic of folded flows, alerts and pod health, keyed by workload")
    kafka_state_topic: str = option("netwarden.state", "compacted topic of learned-state snapshots, keyed by workload")
    kafka_group: str = option("netwarden-decide", "consumer group of the decide engines")
    kafka_tls_dir: str | None = option(
        None, "folder of a mounted TLS Secret for Kafka: ca.crt verifies the brokers, tls.crt + tls.key (when present) "
              "are the client certificate; unset: plaintext")
    kafka_sasl_mechanism: str | None = option(None, "PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512; unset: no SASL")
    kafka_sasl_username: str | None = option(None, "SASL user name")
    kafka_sasl_password_file: str | None = option(None, "file holding the SASL password (a mounted Secret key)")
    fold_seconds: float = option(1.0, "ingest: flows of one edge within this many seconds become one Kafka row with a count")
    ingest_buffer: int = option(
        100000, "ingest: Kafka records held while the brokers are away; past it new ones are dropped and counted")


@dataclass(frozen=True)
class NetwardenConfig:
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    reconciler: ReconcilerConfig = field(default_factory=ReconcilerConfig)
    #: The `core` section as written: netwarden.reconciler.core.config.CoreConfig.from_mapping validates it.
    core: Mapping[str, Any] = field(default_factory=dict)


SECTIONS: dict[str, type] = {"cluster": ClusterConfig, "webhook": WebhookConfig, "reconciler": ReconcilerConfig}
#: A section of the file that is a free mapping validated by its owner, not by this module.
CORE_SECTION = "core"


# --- describing options ------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionInfo:
    section: str
    name: str
    type_: Any
    default: Any
    help: str

    @property
    def env(self) -> str:
        infix = "" if self.section == SHARED_SECTION else f"{self.section.upper()}_"
        return f"{ENV_PREFIX}{infix}{self.name.upper()}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def section_options(section: str) -> list[OptionInfo]:
    cls = SECTIONS[section]
    hints = get_type_hints(cls)
    return [
        OptionInfo(section, f.name, hints[f.name], f.default, f.metadata.get("help", ""))
        for f in dataclasses.fields(cls)
    ]


def format_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return ",".join(value) or "empty"
    return str(value)


def options_markdown() -> str:
    """The README table of every option (section, env variable, default, help)."""
    rows = ["| section | option | environment | default | what it does |", "|---|---|---|---|---|"]
    for section in SECTIONS:
        for opt in section_options(section):
            help_text = opt.help.replace("|", "\\|")
            rows.append(f"| {section} | `{opt.name}` | `{opt.env}` | `{format_default(opt.default)}` | {help_text} |")
    return "\n".join(rows)


# --- parsing values ----------------------------------------------------------------------------


def convert(opt: OptionInfo, raw: Any, source: str) -> Any:
    """A raw value (string from env/CLI, or a YAML scalar/list) as the option's type."""
    type_ = opt.type_
    try:
        if raw is None:
            if _allows_none(type_):
                return None
            raise ValueError("a value is required")
        if type_ == tuple[str, ...]:
            items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        base = _base_type(type_)
        if base is bool:
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if base is int:
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            return int(raw)
        if base is float:
            return float(raw)
        value = str(raw)
        if value == "" and _allows_none(type_):
            return None
        return value
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{opt.section}.{opt.name} from {source}: {raw!r}: {exc}") from None


def _allows_none(type_: Any) -> bool:
    return type(None) in getattr(type_, "__args__", ())


def _base_type(type_: Any) -> Any:
    args = [a for a in getattr(type_, "__args__", ()) if a is not type(None)]
    return args[0] if args and _allows_none(type_) else type_


def load_config(
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> NetwardenConfig:
    """Defaults < YAML file named by NETWARDEN_CONFIG < NETWARDEN_* environment < `overrides` (flags)."""
    env = os.environ if env is None else env
    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    path = env.get(CONFIG_FILE_ENV)
    core: Mapping[str, Any] = {}
    if path:
        sections = _read_yaml(path)
        core = sections.pop(CORE_SECTION, {})
        for section, items in sections.items():
            for opt in section_options(section):
                if opt.name in items:
                    values[section][opt.name] = convert(opt, items[opt.name], f"{path}")
    for section in SECTIONS:
        for opt in section_options(section):
            if opt.env in env:
                values[section][opt.name] = convert(opt, env[opt.env], f"${opt.env}")
    for section, items in (overrides or {}).items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r}")
        for opt in section_options(section):
            if items.get(opt.name) is not None:
                values[section][opt.name] = convert(opt, items[opt.name], opt.flag)
    config = NetwardenConfig(**{s: SECTIONS[s](**values[s]) for s in SECTIONS}, core=dict(core))
    validate(config)
    return config


def _read_yaml(path: str) -> dict[str, dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{CONFIG_FILE_ENV}={path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    out: dict[str, dict[str, Any]] = {}
    for section, items in data.items():
        if section not in SECTIONS and section != CORE_SECTION:
            raise ConfigError(f"{path}: unknown section {section!r} (expected {', '.join([*SECTIONS, CORE_SECTION])})")
        if not isinstance(items, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping")
        if section == CORE_SECTION:
            out[section] = items
            continue
        known = {opt.name for opt in section_options(section)}
        unknown = sorted(set(items) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown option(s) in {section!r}: {', '.join(unknown)}")
        out[section] = items
    return out


def validate(config: NetwardenConfig) -> None:
    if config.cluster.default_mode not in names.MODES:
        raise ConfigError(f"cluster.default_mode {config.cluster.default_mode!r}: expected one of {', '.join(names.MODES)}")
    namespace, _, name = config.cluster.dns_service.partition("/")
    if not namespace or not name:
        raise ConfigError(f"cluster.dns_service {config.cluster.dns_service!r}: expected NAMESPACE/NAME")
    try:
        config.cluster.creators()
    except ValueError as exc:
        raise ConfigError(f"cluster.pod_creators {exc}") from None
    if not 1 <= config.reconciler.port <= 65535:
        raise ConfigError(f"reconciler.port {config.reconciler.port}: expected 1-65535")
    if config.reconciler.cleanup_grace_seconds < 0:
        raise ConfigError("reconciler.cleanup_grace_seconds: expected 0 or more")
    if config.reconciler.quarantine_backend not in QUARANTINE_BACKENDS:
        raise ConfigError(f"reconciler.quarantine_backend {config.reconciler.quarantine_backend!r}: expected one of "
                          f"{', '.join(QUARANTINE_BACKENDS)}")
    if not 0 <= config.reconciler.admin_policy_priority <= 1000:
        raise ConfigError(f"reconciler.admin_policy_priority {config.reconciler.admin_policy_priority}: expected 0-1000")
    if config.reconciler.role not in ("single", "ingest", "decide"):
        raise ConfigError(f"reconciler.role {config.reconciler.role!r}: expected single, ingest or decide")
    if config.reconciler.role != "single" and not config.reconciler.kafka_brokers:
        raise ConfigError(f"reconciler.role {config.reconciler.role}: set reconciler.kafka_brokers")
    if config.reconciler.stream_buffer < 1:
        raise ConfigError(f"reconciler.stream_buffer {config.reconciler.stream_buffer}: expected at least 1")
    hook = config.webhook
    if not 1 <= hook.port <= 65535:
        raise ConfigError(f"webhook.port {hook.port}: expected 1-65535")
    for name_, value in (("workers", hook.workers), ("threads", hook.threads), ("api_attempts", hook.api_attempts)):
        if value < 1:
            raise ConfigError(f"webhook.{name_} {value}: expected at least 1")
    if hook.baseline_write not in ("sync", "async"):
        raise ConfigError(f"webhook.baseline_write {hook.baseline_write!r}: expected sync or async")


# --- command line ------------------------------------------------------------------------------


def add_section_arguments(parser: argparse.ArgumentParser, section: str, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per option of a section; help shows the environment variable and default."""
    group = parser.add_argument_group(f"{section} options", SECTIONS[section].__doc__)
    for opt in section_options(section):
        if opt.name in skip:
            continue
        base = _base_type(opt.type_)
        metavar = {int: "N", float: "SECONDS" if "seconds" in opt.name or "interval" in opt.name else "X"}.get(base)
        if opt.type_ == tuple[str, ...]:
            metavar = "A,B,..."
        group.add_argument(
            opt.flag,
            dest=f"{section}__{opt.name}",
            default=None,
            metavar=metavar or ("FILE" if opt.name in ("cert", "key", "kubeconfig", "client_ca") else "VALUE"),
            help=f"{opt.help} [env {opt.env}; default {format_default(opt.default)}]",
        )


def overrides_from_args(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Flags given on the command line, by section (for `load_config(overrides=...)`)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in vars(args).items():
        section, sep, name = key.partition("__")
        if sep and section in SECTIONS and value is not None:
            out.setdefault(section, {})[name] = value
    return out


def export_to_env(config: NetwardenConfig, env: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Write the effective config as NETWARDEN_* variables, so forked workers load the same values."""
    for section in SECTIONS:
        current = getattr(config, section)
        for opt in section_options(section):
            value = getattr(current, opt.name)
            if value is None:
                env.pop(opt.env, None)
            elif isinstance(value, tuple):
                env[opt.env] = ",".join(value)
            else:
                env[opt.env] = str(value)


if __name__ == "__main__":
    print(options_markdown())
