"""`netwarden reconciler` and the operator commands (status, explain, approve, reject, rollback).

The operator commands read and write the cluster only (annotations on the managed policies), so
they need no connection to a running reconciler.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from netwarden.model import names
from netwarden.platform.logs import log_event

if TYPE_CHECKING:  # the commands import what they use when run, so `--help` stays fast
    from netwarden.platform.kube import KubeClient
    from netwarden.reconciler.policy_ops import PolicyWriter

log = logging.getLogger("netwarden.reconciler")

DEFAULT_PORT = 8444


def add_reconciler_parser(subparsers: argparse._SubParsersAction) -> None:
    from netwarden.platform.config import ReconcilerConfig, add_section_arguments

    run = subparsers.add_parser(
        "reconciler", help="run the reconciler (watches, leader election, signal receivers)",
        description="Every option also comes from the config file (NETWARDEN_CONFIG / --config: sections cluster, "
                    "reconciler and core) and from NETWARDEN_* environment variables; flags win.")
    run.add_argument("--config", metavar="FILE", help="the netwarden config file (YAML sections; sets NETWARDEN_CONFIG)")
    run.add_argument("--mode", choices=names.MODES, help="shortcut for --default-mode")
    run.add_argument("--flows-file", help="also ingest JSON-lines flows from PATH ('-' for stdin)")
    run.add_argument("--no-auth", action="store_true", help="accept signals without a token (local use only)")
    add_section_arguments(run, "cluster")
    add_section_arguments(run, "reconciler")
    run.set_defaults(func=run_reconciler)

    status = subparsers.add_parser("status", help="managed policies: step, mode, score, pending changes")
    status.add_argument("--kubeconfig")
    status.add_argument("-n", "--namespace", help="only this namespace")
    status.add_argument("-o", "--output", choices=("table", "json"), default="table")
    status.set_defaults(func=cmd_status)

    explain = subparsers.add_parser("explain", help="why a workload's policy is what it is (evidence, history)")
    explain.add_argument("workload", help="workload identity (ns.kind.name) or policy name")
    explain.add_argument("--kubeconfig")
    explain.add_argument("-n", "--namespace")
    explain.set_defaults(func=cmd_explain)

    for verb, helptext in (("approve", "apply the change pending on a policy (approve mode)"),
                           ("reject", "drop the change pending on a policy"),
                           ("rollback", "put back a previous spec from the policy's history")):
        sub = subparsers.add_parser(verb, help=helptext)
        sub.add_argument("policy")
        sub.add_argument("-n", "--namespace", required=True)
        sub.add_argument("--kubeconfig")
        if verb == "rollback":
            sub.add_argument("--to", type=int, dest="to_revision", metavar="REVISION",
                             help="revision to restore (default: the previous one)")
        if verb == "approve":
            sub.add_argument("--lease", default=f"{ReconcilerConfig.lease_namespace}/{ReconcilerConfig.lease_name}",
                             metavar="NAMESPACE/NAME", help="the reconciler's leader Lease: while it is held, the "
                             "reconciler carries the approval out (default: %(default)s)")
            sub.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                             help="how long to wait for the reconciler to carry it out (default: %(default)s)")
        sub.set_defaults(func=cmd_policy_op, verb=verb)


def _kube(kubeconfig: str | None) -> KubeClient:
    from netwarden.platform.kube import KubeClient, load_api_client

    return KubeClient(load_api_client(kubeconfig))


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"


# --- operator commands ------------------------------------------------------------------------


def policy_rows(policies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for obj in sorted(policies, key=lambda p: (p["metadata"].get("namespace") or "", p["metadata"]["name"])):
        meta = obj["metadata"]
        ann = meta.get("annotations") or {}
        labels = meta.get("labels") or {}
        rows.append({
            "namespace": meta.get("namespace") or ann.get(names.ANNOTATION_TARGET_NAMESPACE),
            "policy": meta["name"] if obj.get("kind", "NetworkPolicy") == "NetworkPolicy" else f"{obj['kind']}/{meta['name']}",
            "identity": labels.get(names.LABEL_IDENTITY, ""), "role": labels.get(names.LABEL_POLICY_ROLE, ""),
            "step": ann.get(names.ANNOTATION_STEP, ""), "mode": ann.get(names.ANNOTATION_POLICY_MODE, ""),
            "score": ann.get(names.ANNOTATION_SCORE, ""), "revision": ann.get(names.ANNOTATION_REVISION, ""),
            "reason": ann.get(names.ANNOTATION_REASON, ""), "expires_at": ann.get(names.ANNOTATION_EXPIRES_AT, ""),
            "pending": bool(ann.get(names.ANNOTATION_PENDING)),
            "adopted": ann.get(names.ANNOTATION_ADOPTED, "").lower() == "true",
        })
    return rows


def cmd_status(args: argparse.Namespace) -> int:
    from netwarden.reconciler.admin_backend import list_admin_quarantines, weak_containment_findings
    from netwarden.reconciler.watch import MANAGED_SELECTOR

    kube = _kube(args.kubeconfig)
    admin = [o for o in list_admin_quarantines(kube) if args.namespace is None or
             ((o["metadata"].get("annotations") or {}).get(names.ANNOTATION_TARGET_NAMESPACE)) == args.namespace]
    rows = policy_rows(kube.list_policies(args.namespace, MANAGED_SELECTOR) + admin)
    weak = weak_containment_findings(kube, args.namespace)
    for row in rows:
        # A workload's row carries what weakens it: user policies widening its pods, allow-alls in its namespace.
        row["weak_containment"] = [f["message"] for f in weak if f["namespace"] == row["namespace"]
                                   and f["identity"] in ("", row["identity"])]
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    columns = ("namespace", "policy", "role", "step", "mode", "score", "revision", "pending", "expires_at", "reason")
    table = [[str(r[c]) if r[c] not in (False, "") else "-" for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in table]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    for finding in weak:
        print(f"WARNING: {finding['message']}")
    return 0


def explain_document(policies: list[dict[str, Any]], workload: str) -> dict[str, Any]:
    from netwarden.reconciler.policy_ops import history_of

    chosen = [p for p in policies if (p["metadata"].get("labels") or {}).get(names.LABEL_IDENTITY) == workload
              or p["metadata"]["name"] == workload]
    out: dict[str, Any] = {"workload": workload, "policies": []}
    for obj in chosen:
        ann = obj["metadata"].get("annotations") or {}
        try:
            evidence = json.loads(ann.get(names.ANNOTATION_EVIDENCE) or "[]")
        except ValueError:
            evidence = []
        pending = ann.get(names.ANNOTATION_PENDING)
        history = history_of(obj)
        out["policies"].append({
            **policy_rows([obj])[0],
            "changed_by": ann.get(names.ANNOTATION_CHANGED_BY, ""),
            "evidence": evidence,
            "pending": json.loads(pending) if pending else None,
            "history": [{"revision": e.revision, "step": e.step, "replaced_because": e.reason} for e in history.entries],
            "spec": obj.get("spec"),
        })
    return out


def unreachable_pods(kube: Any, namespace: str | None, workload: str) -> list[dict[str, str]]:
    """The workload's pods NetworkPolicy cannot reach (hostNetwork), with why (netwarden.model.reach)."""
    from netwarden.model.reach import outside_policy_reach

    namespace = namespace or (workload.split(".", 1)[0] if workload.count(".") >= 2 else None)
    selector = f"{names.LABEL_IDENTITY}={workload}"
    out = []
    items, _ = kube.list_objects("pods", namespace=namespace, label_selector=selector)
    for pod in items:
        why = outside_policy_reach(pod)
        if why:
            out.append({"pod": f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}", "why": why})
    return out


def netwarden_events(kube: Any, document: dict[str, Any], namespace: str | None, workload: str,
                     limit: int = 20) -> list[dict[str, str]]:
    """netwarden's latest Events on the workload's policies and pods: what it did, and what it refused
    to do and why (a guard rail, a baseline too thin to tighten to, an alert too old to act on)."""
    namespace = namespace or (workload.split(".", 1)[0] if workload.count(".") >= 2 else None)
    if namespace is None:
        return []
    objects = {p["policy"] for p in document["policies"]}
    items, _ = kube.list_objects("pods", namespace=namespace, label_selector=f"{names.LABEL_IDENTITY}={workload}")
    objects.update(p["metadata"]["name"] for p in items)
    out = []
    for name in sorted(objects):
        for event in kube.list_events(namespace, name):
            if str(event.get("reason") or "").startswith("Netwarden"):
                involved = event.get("involved_object") or event.get("involvedObject") or {}
                out.append({"time": str(event.get("last_timestamp") or event.get("lastTimestamp") or ""),
                            "object": f"{involved.get('kind')}/{involved.get('name')}",
                            "reason": event.get("reason"), "message": event.get("message")})
    return sorted(out, key=lambda e: e["time"])[-limit:]


def cmd_explain(args: argparse.Namespace) -> int:
    from netwarden.reconciler.admin_backend import list_admin_quarantines, weak_containment_findings
    from netwarden.reconciler.watch import MANAGED_SELECTOR

    kube = _kube(args.kubeconfig)
    document = explain_document(kube.list_policies(args.namespace, MANAGED_SELECTOR) + list_admin_quarantines(kube),
                                args.workload)
    document["pods_outside_policy_reach"] = unreachable_pods(kube, args.namespace, args.workload)
    document["events"] = netwarden_events(kube, document, args.namespace, args.workload)
    namespaces = {p["namespace"] for p in document["policies"]}
    document["weak_containment"] = [f for f in weak_containment_findings(kube, args.namespace)
                                    if f["namespace"] in namespaces and f["identity"] in ("", args.workload)]
    if not document["policies"] and not document["pods_outside_policy_reach"]:
        print(f"no netwarden policy for {args.workload!r}", file=sys.stderr)
        return 1
    print(json.dumps(document, indent=2, default=str))
    return 0


def cmd_policy_op(args: argparse.Namespace) -> int:
    from netwarden.model.errors import ApiError
    from netwarden.reconciler.policy_ops import PolicyOpError, PolicyWriter, approve, reject, rollback

    writer = PolicyWriter(_kube(args.kubeconfig))
    try:
        if args.verb == "approve":
            return _approve(writer, args)
        elif args.verb == "reject":
            reject(writer, args.namespace, args.policy, changed_by=_actor())
            print(f"rejected: the pending change on {args.namespace}/{args.policy} was dropped")
        else:
            outcome = rollback(writer, args.namespace, args.policy, args.to_revision, changed_by=_actor())
            revision = ((outcome.obj or {}).get("metadata", {}).get("annotations") or {}).get(names.ANNOTATION_REVISION)
            print(f"rolled back {args.namespace}/{args.policy}; now at revision {revision}")
    except PolicyOpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ApiError as exc:  # e.g. refused by netwarden's own guard: an operator not in webhook.policy_writers
        print(f"error: {args.verb} {args.namespace}/{args.policy}: the API server refused it ({exc.status}): "
              f"{exc.message or exc.reason}", file=sys.stderr)
        return 1
    return 0


def _approve(writer: PolicyWriter, args: argparse.Namespace) -> int:
    """While a reconciler leads, it carries the approval out (as its engine decided it: on the admin tier a
    quarantine is its Deny, which the stored NetworkPolicies alone are not); with none, the stored
    change is applied from here."""
    from netwarden.model.errors import ApiError
    from netwarden.reconciler.leader import lease_holder
    from netwarden.reconciler.policy_ops import annotations_of, approve, request_approval

    lease_namespace, _, lease_name = args.lease.partition("/")
    if not lease_namespace or not lease_name:
        print(f"error: --lease {args.lease!r}: expected NAMESPACE/NAME", file=sys.stderr)
        return 2
    try:
        leader = lease_holder(writer.kube.get_lease(lease_namespace, lease_name), time.time())
    except ApiError as exc:
        leader = f"unknown (the Lease is not readable: {exc.status})"
    if leader is None:
        outcomes = approve(writer, args.namespace, args.policy, changed_by=_actor())
        print(f"approved: {len(outcomes)} change(s) applied to {args.namespace}/{args.policy} (no reconciler leads)")
        return 0
    request_approval(writer, args.namespace, args.policy)
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        current = writer.kube.get_policy(args.namespace, args.policy)
        if current is None or names.ANNOTATION_PENDING not in annotations_of(current):
            print(f"approved: carried out by the reconciler ({leader}) on {args.namespace}/{args.policy}")
            return 0
        time.sleep(0.2)
    print(f"error: approval requested on {args.namespace}/{args.policy}, but the reconciler ({leader}) has not "
          f"carried it out within {args.wait:g} s; it will when it can", file=sys.stderr)
    return 1


# --- the reconciler process -------------------------------------------------------------------


def run_reconciler(args: argparse.Namespace) -> int:
    from netwarden.reconciler.controller import ControllerSettings
    from netwarden.reconciler.core.config import CoreConfig
    from netwarden.reconciler.forwarding import SignalForwarder, advertised_address
    from netwarden.reconciler.leader import AlwaysOpen, LeaderElector
    from netwarden.reconciler.priority import freeze_started_objects, use_reconciler_switch_interval
    from netwarden.reconciler.receivers import ReceiverServer, TokenFile, create_receiver_app, ingest_flow_stream
    from netwarden.reconciler.scaleout.statestore import StateStoreSettings
    from netwarden.reconciler.runtime import ReconcilerRuntime, RuntimeSettings, resolve_dns_target
    from netwarden.reconciler.signals.streams import SignalCounters

    from netwarden.platform.config import load_config, overrides_from_args
    from netwarden.model.errors import ConfigError
    from netwarden.platform.logs import configure_json_logging
    from netwarden.platform.startup import StartupError
    from netwarden.platform.tls import load_serving_certificate

    configure_json_logging(os.environ.get("NETWARDEN_LOG_LEVEL", "INFO").upper())
    env = dict(os.environ)
    if args.config:
        env["NETWARDEN_CONFIG"] = args.config
    overrides = overrides_from_args(args)
    if args.mode:
        overrides.setdefault("cluster", {})["default_mode"] = args.mode
    try:
        config = load_config(env, overrides)
        core_values = dict(config.core)
        if core_values.get("default_mode", config.cluster.default_mode) != config.cluster.default_mode:
            raise ConfigError("core.default_mode differs from cluster.default_mode: set the mode once, in cluster")
        core_values["default_mode"] = config.cluster.default_mode
        core = CoreConfig.from_mapping(core_values)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rc = config.reconciler
    if not args.no_auth and not rc.token_file:
        raise StartupError("no signal token file", "give --token-file FILE (or NETWARDEN_RECONCILER_TOKEN_FILE), "
                           "or --no-auth for local use")
    tls = None
    if rc.cert or rc.key:
        if not (rc.cert and rc.key):
            raise StartupError("the signal receiver needs both a certificate and its key",
                               "give --cert FILE --key FILE (or NETWARDEN_RECONCILER_CERT / _KEY), or neither")
        tls = load_serving_certificate(rc.cert, rc.key, flags="--cert FILE --key FILE (NETWARDEN_RECONCILER_CERT / _KEY)")
    kube = _kube(config.cluster.kubeconfig)
    settings = RuntimeSettings(ControllerSettings(cleanup_grace_seconds=rc.cleanup_grace_seconds,
                                                  dns=resolve_dns_target(kube, config.cluster.dns_service),
                                                  default_mode=core.default_mode,
                                                  write_rate_per_second=core.write_rate_per_second,
                                                  write_burst=core.write_burst, max_history=core.max_history,
                                                  safety_write_rate_per_second=core.safety_write_rate_per_second,
                                                  safety_write_burst=core.safety_write_burst,
                                                  history_max_bytes=core.history_max_bytes,
                                                  quarantine_backend=rc.quarantine_backend,
                                                  admin_policy_priority=rc.admin_policy_priority),
                               state=StateStoreSettings(rc.lease_namespace, rc.state_shards, rc.state_checkpoint_seconds)
                               if rc.state_shards > 0 else None)
    if rc.role != "single":  # scale-out on Kafka: netwarden/reconciler/scaleout/roles.py
        from dataclasses import replace

        from netwarden.reconciler.scaleout.roles import run_role

        return run_role(rc, lambda gate, _: ReconcilerRuntime(kube, replace(settings, state=None), core, gate=gate),
                        token=None if args.no_auth else TokenFile(rc.token_file), tls=tls)
    runtime_holder: list[Any] = []
    forwarder: SignalForwarder | None = None
    if not rc.leader_elect:
        gate: Any = AlwaysOpen()
    else:
        identity = os.environ.get("NETWARDEN_POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        gate = LeaderElector(kube, rc.lease_namespace, rc.lease_name, identity,
                             on_started=lambda: runtime_holder and runtime_holder[0].on_leadership(),
                             address=advertised_address(rc.port, tls=bool(rc.cert and rc.key)))
        # A standby passes signals to the leader (its engine is the one that acts), never scores them itself.
        forwarder = SignalForwarder(gate.is_open, gate.leader_address, identity,
                                    pinned_cert=rc.cert if rc.cert and rc.key else None)
    use_reconciler_switch_interval()  # every GIL hand-off bounded (netwarden/reconciler/priority.py)
    runtime = ReconcilerRuntime(kube, settings, core, gate=gate)
    runtime_holder.append(runtime)
    if isinstance(gate, LeaderElector):
        gate.start()
    runtime.start()
    counters = SignalCounters()
    app = create_receiver_app(runtime, token=None if args.no_auth else TokenFile(rc.token_file),
                              counters=counters, ready=runtime.ready, max_body_bytes=rc.max_body_bytes,
                              sources=rc.signal_sources, forwarder=forwarder, tls=tls)
    server = ReceiverServer(app, rc.host, rc.port, tls=tls).start()
    from netwarden.reconciler import metrics
    from netwarden.reconciler.sources import start_flow_sources

    # Hubble Relay / Goldmane streams feed the engine on the leader only (a standby's engine does not act).
    flow_sources = start_flow_sources(rc, runtime, counters, active=gate.is_open, registry=metrics.REGISTRY)
    freeze_started_objects()  # no full collection walks the start-up's objects again (netwarden/reconciler/priority.py)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.flows_file:
        def feed() -> None:
            stream = sys.stdin.buffer if args.flows_file == "-" else open(args.flows_file, "rb")
            with stream:
                result = ingest_flow_stream(stream, runtime, counters, stop=stop)
            log_event(log, "info", {"event": "flows_file_done", **result.to_dict()})
        threading.Thread(target=feed, name="flows-file", daemon=True).start()
    log_event(log, "info", {"event": "reconciler_started", "port": server.port, "tls": bool(rc.cert),
                                "flow_sources": {s.name: s.address for s in flow_sources}})
    stop.wait()
    for source in flow_sources:
        source.stop()
    server.stop()
    runtime.stop()
    if isinstance(gate, LeaderElector):
        gate.stop(release=True)
    return 0
