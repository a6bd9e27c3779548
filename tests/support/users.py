"""Requests as another user: the API server's impersonation (`Impersonate-User`), which both engines honour
for an admin. Pods of a workload are created by its controller's user, as kube-controller-manager does."""

from __future__ import annotations

from kubernetes import client

REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller"
DAEMON_SET_CONTROLLER = "system:serviceaccount:kube-system:daemon-set-controller"


def as_user(api: client.ApiClient, username: str) -> client.ApiClient:
    """A client on the same server and credentials that acts as `username`."""
    impersonating = client.ApiClient(api.configuration)
    impersonating.set_default_header("Impersonate-User", username)
    return impersonating
