{{/* clientConfig, namespaceSelector and matchConditions shared by both webhooks: (dict "ctx" $ "path" "/mutate"). */}}
{{- define "netwarden.webhook.clientConfig" -}}
{{- $ctx := .ctx -}}
clientConfig:
  service:
    name: {{ include "netwarden.webhook.fullname" $ctx }}
    namespace: {{ $ctx.Release.Namespace }}
    path: {{ .path }}
    port: {{ $ctx.Values.webhook.service.port }}
  {{- with (include "netwarden.caBundle" $ctx) }}
  caBundle: {{ . }}
  {{- end }}
{{- end -}}

{{/*
Which namespaces the API server calls the webhook for. kube-system and the release namespace are
always excluded: netwarden must never block the control plane or its own pods from starting.
In `label` mode only namespaces labelled netwarden.io/inject=enabled are sent; in `all` mode every
other namespace is, and the webhook decides by the namespace's netwarden.io/inject annotation.
*/}}
{{- define "netwarden.webhook.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    {{- if eq .Values.webhook.namespaceSelectorMode "label" }}
    - key: netwarden.io/inject
      operator: In
      values: ["enabled"]
    {{- end }}
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{ include "netwarden.webhook.excludedNamespaces" . }}
{{- end -}}

{{/* The label guard's namespaces: every one but the excluded ones, in both modes. */}}
{{- define "netwarden.webhook.guardNamespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{ include "netwarden.webhook.excludedNamespaces" . }}
{{- end -}}

{{- define "netwarden.webhook.matchConditions" -}}
{{- with .Values.webhook.matchConditions }}
matchConditions:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "netwarden.webhook.annotations" -}}
{{- if eq .Values.certificates.source "certManager" }}
annotations:
  # cert-manager's CA injector writes the Certificate's CA into caBundle.
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "netwarden.webhook.fullname" . }}
{{- end }}
{{- end -}}

{{/* netwarden's own service accounts, as JSON: they write pod labels and netwarden's policies. */}}
{{- define "netwarden.writers" -}}
{{- list
      (printf "system:serviceaccount:%s:%s" .Release.Namespace (include "netwarden.webhook.serviceAccountName" .))
      (printf "system:serviceaccount:%s:%s" .Release.Namespace (include "netwarden.reconciler.serviceAccountName" .))
    | toJson -}}
{{- end -}}
