{{/*
Every RBAC rule netwarden is granted, in one place and free of values: what the code calls is
what is granted, nothing more. tests/chart/expected_rbac.py lists the same (apiGroup, resource,
verb) triples; a test compares the two, and a coverage test compares them with the API calls the
code makes. Change all three together.
*/}}

{{/* Webhook (cluster-wide): decide labels and write the baseline policy for one admitted pod. */}}
{{- define "netwarden.rules.webhook" -}}
# Namespace labels/annotations: opt-in, environment, mode.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
# Owner verification: the pod's controller and the owner above it (ReplicaSet -> Deployment,
# Job -> CronJob) are fetched and their uids compared with the references.
- apiGroups: ["apps"]
  resources: ["replicasets", "statefulsets", "daemonsets", "deployments"]
  verbs: ["get"]
- apiGroups: ["batch"]
  resources: ["jobs", "cronjobs"]
  verbs: ["get"]
# The cluster DNS Service (NETWARDEN_DNS_SERVICE), so baselines allow DNS egress.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get"]
# The baseline NetworkPolicy written at admission (create only: 409 means it exists).
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create"]
# Audit Events on pods and policies.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/* Reconciler (cluster-wide): watch pods and namespaces, manage policies, record Events. */}}
{{- define "netwarden.rules.reconciler" -}}
# Pod index for signals (list/watch); label backfill for pods admitted while the webhook was away.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch"]
# Namespace opt-in and modes, from the informer (no per-namespace reads).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
# A missing baseline re-created from a pod admission labelled verifies its owners as admission does
# (the owner's uid and its own owner; the backfill of a pod the webhook never saw fetches none: its
# creator is unknown); start-up garbage collection checks whether the workload owning a pod-less policy still exists.
- apiGroups: ["apps"]
  resources: ["replicasets", "statefulsets", "daemonsets", "deployments"]
  verbs: ["get"]
- apiGroups: ["batch"]
  resources: ["jobs", "cronjobs"]
  verbs: ["get"]
# The policies netwarden manages: tighten, relax, quarantine, roll back, clean up.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Audit Events (core/v1, created once each).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# The cluster DNS Service.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get"]
{{- end -}}

{{/* Reconciler (cluster-wide), only when an admin-tier quarantine backend is on: its cluster-scoped
quarantine objects (write, renew after a restart, list orphans, remove with their pod). The argument is
the resource ("clusternetworkpolicies" or "adminnetworkpolicies"), chosen by netwarden.quarantine.adminResource. */}}
{{- define "netwarden.rules.reconcilerAdminPolicies" -}}
- apiGroups: ["policy.networking.k8s.io"]
  resources: [{{ . | quote }}]
  verbs: ["get", "list", "create", "update", "delete"]
{{- end -}}

{{/* Reconciler (release namespace only): the leader-election Lease. */}}
{{- define "netwarden.rules.reconcilerLease" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end -}}

{{/* Reconciler (release namespace only): the learned-state Secrets the chart creates, by name
(the argument is how many). No create: a Secret created by name could be a service-account token. */}}
{{- define "netwarden.rules.reconcilerState" -}}
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: [{{ range $n := until (int .) }}{{ if $n }}, {{ end }}{{ printf "netwarden-state-%d" $n | quote }}{{ end }}]
  verbs: ["get", "update"]
{{- end -}}

{{/* Install/upgrade hook only (release namespace): create the Secrets the first time. Create
cannot be limited by name (RBAC sees no name before the object exists), so the long-lived rotation
CronJob does not get it: it only reads and updates the two Secrets by name. */}}
{{- define "netwarden.rules.certsCreate" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
{{- end -}}

{{/* Certificate Jobs (release namespace only): the serving-certificate Secrets, by name. */}}
{{- define "netwarden.rules.certs" -}}
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: [{{ include "netwarden.tls.secretName" . | quote }}, {{ include "netwarden.certs.caSecretName" . | quote }}]
  verbs: ["get", "update"]
{{- end -}}

{{/* Certificate Jobs (cluster-wide, by name): write the CA into netwarden's own webhooks only. */}}
{{- define "netwarden.rules.certsWebhooks" -}}
- apiGroups: ["admissionregistration.k8s.io"]
  resources: ["mutatingwebhookconfigurations"]
  resourceNames: [{{ include "netwarden.mutatingWebhook.name" . | quote }}]
  verbs: ["get", "patch"]
- apiGroups: ["admissionregistration.k8s.io"]
  resources: ["validatingwebhookconfigurations"]
  resourceNames: [{{ include "netwarden.validatingWebhook.name" . | quote }}]
  verbs: ["get", "patch"]
{{- end -}}
