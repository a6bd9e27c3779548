{{/*
Names, labels and selectors, defined once. Templates call these; none builds a name itself.
*/}}

{{- define "netwarden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-netwarden", or the release name when it already contains the chart name. */}}
{{- define "netwarden.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "netwarden.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object names per role (fullname is capped at 40 characters so every suffix fits in 63). */}}
{{- define "netwarden.webhook.fullname" -}}{{ include "netwarden.fullname" . }}-webhook{{- end -}}
{{- define "netwarden.reconciler.fullname" -}}{{ include "netwarden.fullname" . }}-reconciler{{- end -}}
{{- define "netwarden.certs.fullname" -}}{{ include "netwarden.fullname" . }}-certs{{- end -}}
{{- define "netwarden.config.name" -}}{{ include "netwarden.fullname" . }}-config{{- end -}}
{{- define "netwarden.certs.caSecretName" -}}{{ include "netwarden.fullname" . }}-webhook-ca{{- end -}}
{{- define "netwarden.mutatingWebhook.name" -}}{{ include "netwarden.fullname" . }}-mutate{{- end -}}
{{- define "netwarden.validatingWebhook.name" -}}{{ include "netwarden.fullname" . }}-validate{{- end -}}

{{/* The TLS Secret (tls.crt, tls.key, ca.crt) both components mount. */}}
{{- define "netwarden.tls.secretName" -}}
{{- if eq .Values.certificates.source "provided" -}}
{{- required "certificates.provided.secretName is required when certificates.source=provided" .Values.certificates.provided.secretName -}}
{{- else -}}
{{- include "netwarden.fullname" . }}-webhook-tls
{{- end -}}
{{- end -}}

{{- define "netwarden.signalToken.secretName" -}}
{{- default (printf "%s-signal-token" (include "netwarden.fullname" .)) .Values.reconciler.signalToken.existingSecret -}}
{{- end -}}

{{- define "netwarden.reconciler.leaseName" -}}
{{- default (include "netwarden.reconciler.fullname" .) .Values.reconciler.leaseName -}}
{{- end -}}

{{/* DNS names the serving certificate must cover: the webhook Service and the signals Service. */}}
{{- define "netwarden.tls.dnsNames" -}}
{{- $ns := .Release.Namespace -}}
{{- range $svc := list (include "netwarden.webhook.fullname" .) (include "netwarden.reconciler.fullname" .) }}
- {{ $svc }}
- {{ $svc }}.{{ $ns }}
- {{ $svc }}.{{ $ns }}.svc
- {{ $svc }}.{{ $ns }}.svc.cluster.local
{{- end }}
{{- end -}}

{{- define "netwarden.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "netwarden.labels" -}}
helm.sh/chart: {{ include "netwarden.chart" . }}
app.kubernetes.io/name: {{ include "netwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: netwarden
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels for one component: call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "netwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "netwarden.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "netwarden.componentLabels" -}}
{{ include "netwarden.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* ServiceAccount names, and their usernames as the API server reports them. */}}
{{- define "netwarden.webhook.serviceAccountName" -}}{{ include "netwarden.webhook.fullname" . }}{{- end -}}
{{- define "netwarden.reconciler.serviceAccountName" -}}{{ include "netwarden.reconciler.fullname" . }}{{- end -}}
{{- define "netwarden.certs.serviceAccountName" -}}{{ include "netwarden.certs.fullname" . }}{{- end -}}

{{/* Pod-level settings shared by every netwarden pod. */}}
{{- define "netwarden.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "netwarden.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{/* Topology spread constraints with the component's selector filled in. */}}
{{- define "netwarden.topologySpread" -}}
{{- $selector := include "netwarden.selectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml -}}
{{- range .constraints }}
- {{ toYaml (merge (dict "labelSelector" (dict "matchLabels" $selector)) .) | nindent 2 | trim }}
{{- end }}
{{- end -}}

{{/* The caBundle to write into the webhook configurations (empty when something else fills it). */}}
{{- define "netwarden.caBundle" -}}
{{- if eq .Values.certificates.source "provided" -}}
{{- required "certificates.provided.caBundle is required when certificates.source=provided" .Values.certificates.provided.caBundle -}}
{{- else if eq .Values.certificates.source "builtin" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "netwarden.tls.secretName" .) -}}
{{- if and $secret $secret.data -}}
{{- index $secret.data "ca.crt" | default "" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Namespaces never sent to the webhook. */}}
{{- define "netwarden.webhook.excludedNamespaces" -}}
{{- $excluded := concat (list "kube-system" .Release.Namespace) .Values.webhook.excludedNamespaces | uniq -}}
{{- toJson $excluded -}}
{{- end -}}

{{/*
Where the API server calls the webhook from, as CIDRs: networkPolicy.apiServerCIDRs when given,
else the addresses of the `kubernetes` Service's endpoints in `default` (the API server's own),
looked up at install and upgrade. Empty under `helm template` (no cluster to ask): the webhook
NetworkPolicy then admits no API server address, and NOTES.txt says so.
*/}}
{{- define "netwarden.apiServerCIDRs" -}}
{{- $cidrs := list -}}
{{- if .Values.networkPolicy.apiServerCIDRs -}}
{{- $cidrs = .Values.networkPolicy.apiServerCIDRs -}}
{{- else -}}
{{- $endpoints := lookup "v1" "Endpoints" "default" "kubernetes" -}}
{{- range (get $endpoints "subsets" | default list) -}}
{{- range (get . "addresses" | default list) -}}
{{- $cidrs = append $cidrs (printf "%s/%s" .ip (ternary "128" "32" (contains ":" .ip))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $cidrs -}}
{{- end -}}

{{/*
The admin-tier resource the reconciler's quarantine backend writes, or "" (NetworkPolicy only): the
backend asked for, or with "auto" what the cluster serves as Helm sees it (the reconciler's own
discovery uses the same order: ClusterNetworkPolicy v1beta1, v1alpha2, then AdminNetworkPolicy v1alpha1).
*/}}
{{- define "netwarden.quarantine.adminResource" -}}
{{- $backend := .Values.config.quarantine.backend -}}
{{- $caps := .Capabilities.APIVersions -}}
{{- if eq $backend "clusternetworkpolicy" -}}clusternetworkpolicies
{{- else if eq $backend "adminnetworkpolicy" -}}adminnetworkpolicies
{{- else if eq $backend "auto" -}}
{{- if or ($caps.Has "policy.networking.k8s.io/v1beta1/ClusterNetworkPolicy") ($caps.Has "policy.networking.k8s.io/v1alpha2/ClusterNetworkPolicy") -}}clusternetworkpolicies
{{- else if $caps.Has "policy.networking.k8s.io/v1alpha1/AdminNetworkPolicy" -}}adminnetworkpolicies
{{- end -}}
{{- end -}}
{{- end -}}
