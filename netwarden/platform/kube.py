"""The only place netwarden talks to the Kubernetes API: configuration, retries, conflicts.

Every API call goes through `KubeClient`, so retry policy (429 with Retry-After, 5xx, timeouts,
dropped connections) and the list of (resource, verb) pairs the code uses live in one file. The
RBAC coverage test reads `API_CALLS` below and compares it with what the Helm chart grants.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping, TypeVar

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from netwarden.model import names
from netwarden.model.errors import ApiError, NetwardenError, api_error_class
from netwarden.platform.startup import StartupError
from netwarden.model.identity import OwnerRef

log = logging.getLogger("netwarden.platform.kube")
ADMIN_POLICY_GROUP = "policy.networking.k8s.io"
T = TypeVar("T")

#: (apiGroup, resource, verb) for every call the webhook and reconciler make through KubeClient. The
#: chart's RBAC must match: tests/chart/test_rbac_coverage.py compares both with the audited calls.
API_CALLS: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("", "namespaces", "get"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "pods", "patch"),
        ("", "services", "get"),
        ("", "events", "create"),
        ("", "secrets", "get"),  # the reconciler's learned-state Secrets (netwarden.reconciler.scaleout.statestore), by name
        ("", "secrets", "update"),
        ("apps", "replicasets", "get"),
        ("apps", "statefulsets", "get"),
        ("apps", "daemonsets", "get"),
        ("apps", "deployments", "get"),
        ("batch", "jobs", "get"),
        ("batch", "cronjobs", "get"),
        ("networking.k8s.io", "networkpolicies", "get"),
        ("networking.k8s.io", "networkpolicies", "list"),
        ("networking.k8s.io", "networkpolicies", "watch"),
        ("networking.k8s.io", "networkpolicies", "create"),
        ("networking.k8s.io", "networkpolicies", "update"),
        ("networking.k8s.io", "networkpolicies", "delete"),
        ("networking.k8s.io", "networkpolicies", "patch"),
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
    }
)

#: What the reconciler may call on its admin-tier quarantine objects (policy.networking.k8s.io), only
#: when that backend is on: the chart grants these for the backend's resource (tests/chart/expected_rbac.py).
ADMIN_POLICY_VERBS = ("get", "list", "create", "update", "delete")


def admin_policy_api_calls(plural: str) -> frozenset[tuple[str, str, str]]:
    return frozenset((ADMIN_POLICY_GROUP, plural, verb) for verb in ADMIN_POLICY_VERBS)


RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

#: Resources the reconciler lists and watches, by the plural it names them with.
WATCHED_RESOURCES = ("pods", "namespaces", "networkpolicies")


class WatchExpired(NetwardenError):
    """410 Gone: the resourceVersion a watch resumes from is compacted away; the caller must re-list."""


class WatchError(NetwardenError):
    """The server ended a watch with an ERROR event other than 410."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(str(status.get("message") or status))
        self.status = status


class WatchStream:
    """One open watch connection: iterate for raw events, `close()` from any thread to end it."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self.closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from kubernetes.watch.watch import iter_resp_lines

        try:
            for line in iter_resp_lines(self._response):
                if not line:
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise WatchExpired(str(status.get("message", "")))
                    raise WatchError(status)
                yield event
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._response.close()
            self._response.release_conn()
        except Exception:  # noqa: BLE001 - closing a dead connection may fail; it is closed either way
            pass


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """--kubeconfig FILE, else the in-cluster configuration, else KUBECONFIG / ~/.kube/config.

    None of them usable: a StartupError naming what was tried and how to give one.
    """
    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(client_configuration=configuration)
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as exc:
        if kubeconfig:
            tried = f"the kubeconfig {kubeconfig} is unusable ({exc})"
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            tried = f"the in-cluster configuration is unusable ({exc})"
        else:
            where = os.environ.get("KUBECONFIG") or os.path.expanduser(config.KUBE_CONFIG_DEFAULT_LOCATION)
            tried = f"cannot reach Kubernetes: no in-cluster configuration and no usable kubeconfig at {where} ({exc})"
        raise StartupError(tried, "pass --kubeconfig FILE, set KUBECONFIG, or run in a pod with a service account")
    # Fail a hung request instead of holding a thread forever; retries decide what next.
    configuration.retries = False
    return client.ApiClient(configuration)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 5.0
    request_timeout: float = 10.0


class BudgetExhausted(NetwardenError, TimeoutError):
    """The caller's deadline passed before this API call could be made (or made again)."""


#: A call with less time than this left is not started: it could not finish.
MIN_CALL_SECONDS = 0.05


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in RETRYABLE_STATUSES or exc.status == 0
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError))


def retry_after_seconds(exc: BaseException) -> float | None:
    if isinstance(exc, ApiException) and exc.headers:
        value = exc.headers.get("Retry-After")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None
    return None


def call_with_retries(
    fn: Callable[..., T],
    *args: Any,
    retry: RetryPolicy = RetryPolicy(),
    on_retry: Callable[[BaseException, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    **kwargs: Any,
) -> T:
    """Call `fn`, retrying transient API faults with exponential backoff and full jitter.

    With a `deadline` (a `clock()` value) every attempt's timeout is cut to the time left, and no
    attempt or backoff starts past it (BudgetExhausted, or the last error): attempts x timeout can
    never add up to more than the caller has.
    """
    timeout = kwargs.get("_request_timeout")
    for attempt in range(1, retry.attempts + 1):
        if deadline is not None:
            left = deadline - clock()
            if left < MIN_CALL_SECONDS:
                raise BudgetExhausted(f"API budget exhausted before {getattr(fn, '__name__', 'the call')}")
            kwargs["_request_timeout"] = min(float(timeout), left) if isinstance(timeout, (int, float)) else left
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - classified below
            if attempt == retry.attempts or not is_retryable(exc):
                raise
            delay = retry_after_seconds(exc)
            if delay is None:
                delay = random.uniform(0, min(retry.max_delay, retry.base_delay * 2 ** (attempt - 1)))
            if deadline is not None and clock() + min(delay, retry.max_delay) + MIN_CALL_SECONDS > deadline:
                raise
            if on_retry is not None:
                on_retry(exc, attempt)
            log.debug("retrying %s after %s (attempt %d)", getattr(fn, "__name__", fn), exc, attempt)
            sleep(min(delay, retry.max_delay))
    raise AssertionError("unreachable")


def status_of(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, (ApiException, ApiError)) else None


_WIRE_ERRORS: dict[type[ApiError], type[ApiError]] = {}


def project_error(exc: ApiException) -> ApiError:
    """The project's error for a client exception. It is also an ApiException (same status, reason, body,
    headers) so that code not yet moved to the project's errors keeps working; new code catches the
    project's classes and never imports the client library."""
    base = api_error_class(int(exc.status or 0))
    wire = _WIRE_ERRORS.get(base)
    if wire is None:
        wire = _WIRE_ERRORS[base] = type(base.__name__, (base, ApiException), {"__module__": __name__})
    error = wire.__new__(wire)
    ApiException.__init__(error, status=exc.status, reason=exc.reason)
    error.body, error.headers = exc.body, exc.headers
    error.message = _status_message(exc.body) or str(exc.reason or "")
    return error


def _status_message(body: Any) -> str:
    """The message of a Status body (e.g. 'admission webhook "..." denied the request: ...'), or ""."""
    try:
        status = json.loads(body) if isinstance(body, (str, bytes)) else None
    except ValueError:
        return ""
    return str(status.get("message") or "") if isinstance(status, dict) else ""


_OWNER_READERS: dict[str, tuple[str, str]] = {
    "ReplicaSet": ("apps", "read_namespaced_replica_set"),
    "StatefulSet": ("apps", "read_namespaced_stateful_set"),
    "DaemonSet": ("apps", "read_namespaced_daemon_set"),
    "Deployment": ("apps", "read_namespaced_deployment"),
    "Job": ("batch", "read_namespaced_job"),
    "CronJob": ("batch", "read_namespaced_cron_job"),
}


class KubeClient:
    """Thin, retrying wrapper over the official client. Returns plain dicts (the wire shape)."""

    def __init__(self, api_client: client.ApiClient, retry: RetryPolicy = RetryPolicy(),
                 on_retry: Callable[[BaseException, int], None] | None = None) -> None:
        self.api_client = api_client
        self.retry = retry
        self.on_retry = on_retry
        #: time.monotonic() value after which no call starts (None: each call has its retry budget).
        self.deadline: float | None = None
        self.core = client.CoreV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.admission = client.AdmissionregistrationV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    # -- plumbing ---------------------------------------------------------------------------
    def bounded(self, deadline: float) -> "KubeClient":
        """The same client (connection pool and API objects shared) whose calls all end by `deadline`."""
        twin = object.__new__(type(self))  # copy.copy's work without its protocol lookups (once per review)
        twin.__dict__.update(self.__dict__)
        twin.deadline = deadline
        return twin

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API call with retries; a failure is the project's ApiError (netwarden/model/errors.py) for its status."""
        kwargs.setdefault("_request_timeout", self.retry.request_timeout)
        try:
            return call_with_retries(fn, *args, retry=self.retry, on_retry=self.on_retry, deadline=self.deadline,
                                     **kwargs)
        except ApiException as exc:
            if isinstance(exc, ApiError):
                raise
            raise project_error(exc) from exc

    def _to_dict(self, obj: Any) -> dict[str, Any]:
        return self.api_client.sanitize_for_serialization(obj)

    # -- reads ------------------------------------------------------------------------------
    def get_namespace(self, name: str) -> dict[str, Any] | None:
        try:
            return self._to_dict(self._call(self.core.read_namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._to_dict(self._call(self.core.read_namespaced_service, name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def get_owner_refs(self, namespace: str, kind: str, name: str, uid: str | None = None) -> list[OwnerRef] | None:
        """The ownerReferences of a pod's owner, or None when it cannot be verified.

        Verified means the object exists and (when given) has the uid the pod claims.
        """
        reader = _OWNER_READERS.get(kind)
        if reader is None:
            return None
        api = self.apps if reader[0] == "apps" else self.batch
        try:
            obj = self._to_dict(self._call(getattr(api, reader[1]), name, namespace))
        except ApiException as exc:
            if exc.status in (403, 404):
                return None
            raise
        meta = obj.get("metadata") or {}
        if uid and meta.get("uid") != uid:
            return None
        return [OwnerRef.from_dict(ref) for ref in meta.get("ownerReferences") or []]

    def get_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._to_dict(self._call(self.networking.read_namespaced_network_policy, name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # -- writes -----------------------------------------------------------------------------
    def create_policy(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> tuple[str, dict[str, Any] | None]:
        """Create a NetworkPolicy. Returns ("created", obj) or ("exists", None): 409 is success."""
        namespace = manifest["metadata"]["namespace"]
        kwargs: dict[str, Any] = {"field_manager": names.FIELD_MANAGER}
        if dry_run:
            kwargs["dry_run"] = "All"
        try:
            # Read as JSON, not into the client's models and back: this write sits in a pod's admission.
            response = self._call(self.networking.create_namespaced_network_policy, namespace, dict(manifest),
                                  _preload_content=False, **kwargs)
        except ApiException as exc:
            if exc.status == 409:
                return "exists", None
            raise
        return "created", json.loads(response.data)

    def replace_policy(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Replace with the resourceVersion in the manifest: a stale one raises 409 for the caller to re-read."""
        meta = manifest["metadata"]
        return self._to_dict(
            self._call(
                self.networking.replace_namespaced_network_policy,
                meta["name"], meta["namespace"], dict(manifest), field_manager=names.FIELD_MANAGER,
            )
        )

    def delete_policy(self, namespace: str, name: str) -> bool:
        try:
            self._call(self.networking.delete_namespaced_network_policy, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch_pod_labels(self, namespace: str, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
        body = {"metadata": {"labels": dict(labels)}}
        return self._to_dict(
            self._call(self.core.patch_namespaced_pod, name, namespace, body, field_manager=names.FIELD_MANAGER)
        )

    def emit_event(self, involved: Mapping[str, Any], reason: str, message: str, *, type_: str = "Normal",
                   now: datetime | None = None) -> None:
        """Record a core/v1 Event on an object. Best effort: auditing never blocks the change itself."""
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        stamp = (now or datetime.now(timezone.utc)).isoformat().replace("+00:00", "Z")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'netwarden')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", ""),
                "kind": involved.get("kind", ""),
                "name": meta.get("name", ""),
                "namespace": namespace,
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": names.EVENT_COMPONENT},
            "reportingComponent": names.EVENT_COMPONENT,
            "reportingInstance": os.environ.get("NETWARDEN_POD_NAME", names.EVENT_COMPONENT),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self._call(self.core.create_namespaced_event, namespace, body, _preload_content=False).data
        except Exception as exc:  # noqa: BLE001 - an audit Event must not fail the action it records
            log.warning("event %s on %s/%s not recorded: %s", reason, namespace, meta.get("name"), exc)

    def list_events(self, namespace: str, involved_name: str) -> list[dict[str, Any]]:
        """Events recorded on one object (by name) in a namespace, oldest first (`netwarden explain`)."""
        listed = self._call(self.core.list_namespaced_event, namespace,
                            field_selector=f"involvedObject.name={involved_name}")
        items = [self._to_dict(e) for e in listed.items]
        return sorted(items, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))

    # -- list / watch (the reconciler's informers) ----------------------------------------------
    def _lister(self, resource: str, namespace: str | None) -> Callable[..., Any]:
        if resource == "pods":
            return (self.core.list_pod_for_all_namespaces if namespace is None
                    else lambda **kw: self.core.list_namespaced_pod(namespace, **kw))
        if resource == "namespaces":
            return self.core.list_namespace
        if resource == "networkpolicies":
            return (self.networking.list_network_policy_for_all_namespaces if namespace is None
                    else lambda **kw: self.networking.list_namespaced_network_policy(namespace, **kw))
        raise ValueError(f"not a watched resource: {resource}")

    def list_objects(self, resource: str, *, namespace: str | None = None,
                     label_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Every object of a resource (raw wire dicts) and the list's resourceVersion to watch from."""
        kwargs: dict[str, Any] = {"_preload_content": False}
        if label_selector:
            kwargs["label_selector"] = label_selector
        response = self._call(self._lister(resource, namespace), **kwargs)
        body = json.loads(response.data)
        items = body.get("items") or []
        kind = {"pods": "Pod", "namespaces": "Namespace", "networkpolicies": "NetworkPolicy"}[resource]
        api_version = "networking.k8s.io/v1" if resource == "networkpolicies" else "v1"
        for item in items:  # list items carry no kind; give them one so they read like watch objects
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
        return items, str((body.get("metadata") or {}).get("resourceVersion") or "")

    def watch_objects(self, resource: str, resource_version: str, *, namespace: str | None = None,
                      label_selector: str | None = None, timeout_seconds: int = 300) -> WatchStream:
        """Open a watch from `resource_version` with bookmarks. Not retried: the informer owns backoff."""
        kwargs: dict[str, Any] = {
            "watch": True,
            "allow_watch_bookmarks": True,
            "resource_version": resource_version,
            "timeout_seconds": timeout_seconds,
            "_preload_content": False,
            # A silent dead connection surfaces as a read timeout a little after the server's own.
            "_request_timeout": (self.retry.request_timeout, timeout_seconds + 30),
        }
        if label_selector:
            kwargs["label_selector"] = label_selector
        try:
            response = self._lister(resource, namespace)(**kwargs)
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(str(exc.reason)) from exc
            raise
        return WatchStream(response)

    # -- more reads and writes the reconciler needs ---------------------------------------------
    def list_policies(self, namespace: str | None = None, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.list_objects("networkpolicies", namespace=namespace, label_selector=label_selector)[0]

    def patch_policy_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None],
                                 resource_version: str | None = None) -> dict[str, Any]:
        """Merge-patch annotations (None removes one). With `resource_version`, a concurrent change raises 409."""
        metadata: dict[str, Any] = {"annotations": dict(annotations)}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        return self._to_dict(
            self._call(
                self.networking.patch_namespaced_network_policy, name, namespace, {"metadata": metadata},
                field_manager=names.FIELD_MANAGER, _content_type="application/merge-patch+json",
            )
        )

    # -- admin-tier policies (policy.networking.k8s.io, cluster-scoped; see netwarden/model/admin_policy.py) --
    def served_admin_policy_resources(self) -> dict[str, list[str]]:
        """Discovery: each served version of policy.networking.k8s.io and its resources ({} when none)."""
        groups = self._call(client.ApisApi(self.api_client).get_api_versions).groups or []
        versions = next(([v.version for v in g.versions] for g in groups if g.name == ADMIN_POLICY_GROUP), [])
        out: dict[str, list[str]] = {}
        for version in versions:
            listed = self._call(self.custom.get_api_resources, ADMIN_POLICY_GROUP, version)
            out[version] = [r.name for r in listed.resources or [] if "/" not in r.name]
        return out

    def get_admin_policy(self, version: str, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call(self.custom.get_cluster_custom_object, ADMIN_POLICY_GROUP, version, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_admin_policies(self, version: str, plural: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
        body = self._call(self.custom.list_cluster_custom_object, ADMIN_POLICY_GROUP, version, plural, **kwargs)
        return list(body.get("items") or [])

    def create_admin_policy(self, version: str, plural: str,
                            manifest: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
        """Create a cluster-scoped admin-tier policy. ("created", obj) or ("exists", None) on 409."""
        try:
            created = self._call(self.custom.create_cluster_custom_object, ADMIN_POLICY_GROUP, version, plural,
                                 dict(manifest), field_manager=names.FIELD_MANAGER)
        except ApiException as exc:
            if exc.status == 409:
                return "exists", None
            raise
        return "created", created

    def replace_admin_policy(self, version: str, plural: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Replace with the resourceVersion in the manifest (409 when stale)."""
        return self._call(self.custom.replace_cluster_custom_object, ADMIN_POLICY_GROUP, version, plural,
                          manifest["metadata"]["name"], dict(manifest), field_manager=names.FIELD_MANAGER)

    def delete_admin_policy(self, version: str, plural: str, name: str) -> bool:
        try:
            self._call(self.custom.delete_cluster_custom_object, ADMIN_POLICY_GROUP, version, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- leases (leader election) ---------------------------------------------------------------
    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._to_dict(self._call(self.coordination.read_namespaced_lease, name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create_lease(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Lease; 409 (someone else created it first) is raised for the elector to read as a lost race."""
        namespace = manifest["metadata"]["namespace"]
        return self._to_dict(self._call(self.coordination.create_namespaced_lease, namespace, dict(manifest),
                                        field_manager=names.FIELD_MANAGER))

    def replace_lease(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Replace with the read resourceVersion: 409 means another holder wrote in between."""
        meta = manifest["metadata"]
        return self._to_dict(self._call(self.coordination.replace_namespaced_lease, meta["name"], meta["namespace"],
                                        dict(manifest), field_manager=names.FIELD_MANAGER))

    # -- certificate Secrets and webhook caBundles (the certs hook Job; see netwarden.certs.inject.CERT_JOB_API_CALLS) --
    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._to_dict(self._call(self.core.read_namespaced_secret, name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create_secret(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Secret; 409 (it exists) is raised for the caller to re-read and update."""
        namespace = manifest["metadata"]["namespace"]
        return self._to_dict(self._call(self.core.create_namespaced_secret, namespace, dict(manifest),
                                        field_manager=names.FIELD_MANAGER))

    def replace_secret(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Replace with the read resourceVersion: 409 means someone wrote in between."""
        meta = manifest["metadata"]
        return self._to_dict(self._call(self.core.replace_namespaced_secret, meta["name"], meta["namespace"],
                                        dict(manifest), field_manager=names.FIELD_MANAGER))

    def _webhook_calls(self, mutating: bool) -> tuple[Callable[..., Any], Callable[..., Any]]:
        if mutating:
            return (self.admission.read_mutating_webhook_configuration,
                    self.admission.patch_mutating_webhook_configuration)
        return (self.admission.read_validating_webhook_configuration,
                self.admission.patch_validating_webhook_configuration)

    def get_webhook_configuration(self, name: str, *, mutating: bool) -> dict[str, Any] | None:
        try:
            return self._to_dict(self._call(self._webhook_calls(mutating)[0], name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def json_patch_webhook_configuration(self, name: str, operations: list[dict[str, Any]], *,
                                         mutating: bool) -> dict[str, Any]:
        """RFC 6902 patch; a failed `test` op (the object changed under us) raises 409/422 for a re-read.

        No field_manager: the local API server answers 500 to a JSON patch that names one (reported).
        """
        return self._to_dict(self._call(self._webhook_calls(mutating)[1], name, operations,
                                        _content_type="application/json-patch+json"))
