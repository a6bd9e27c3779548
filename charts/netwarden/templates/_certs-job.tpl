{{/*
The pod spec of the certificate Jobs: `python -c <files/certs-sync.py> PHASE` in the netwarden
image. Call with (dict "ctx" $ "phase" "secret" "serviceAccount" "...").
*/}}
{{- define "netwarden.certs.podSpec" -}}
{{- $ctx := .ctx -}}
serviceAccountName: {{ .serviceAccount }}
# The ServiceAccount disables automounting; these Jobs call the API, so they opt in here.
automountServiceAccountToken: true
restartPolicy: OnFailure
{{- with $ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "netwarden.podSecurityContext" $ctx | nindent 2 }}
containers:
  - name: certs
    image: {{ include "netwarden.image" $ctx }}
    imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
    command: ["python", "-c", {{ $ctx.Files.Get "files/certs-sync.py" | quote }}, {{ .phase | quote }}]
    env:
      - name: NAMESPACE
        value: {{ $ctx.Release.Namespace | quote }}
      - name: SERVICE
        value: {{ include "netwarden.webhook.fullname" $ctx | quote }}
      - name: EXTRA_DNS
        value: {{ include "netwarden.tls.dnsNames" $ctx | fromYamlArray | join "," | quote }}
      - name: TLS_SECRET
        value: {{ include "netwarden.tls.secretName" $ctx | quote }}
      - name: CA_SECRET
        value: {{ include "netwarden.certs.caSecretName" $ctx | quote }}
      - name: MUTATING_WEBHOOK
        value: {{ include "netwarden.mutatingWebhook.name" $ctx | quote }}
      - name: VALIDATING_WEBHOOK
        value: {{ include "netwarden.validatingWebhook.name" $ctx | quote }}
      - name: VALIDITY_DAYS
        value: {{ $ctx.Values.certificates.builtin.validityDays | quote }}
      - name: CA_VALIDITY_DAYS
        value: {{ $ctx.Values.certificates.builtin.caValidityDays | quote }}
      - name: RENEW_WITHIN_DAYS
        value: {{ $ctx.Values.certificates.builtin.renewWithinDays | quote }}
      - name: SECRET_LABELS
        value: {{ include "netwarden.componentLabels" (dict "ctx" $ctx "component" "certs") | fromYaml | toJson | quote }}
    resources:
      {{- toYaml $ctx.Values.certificates.builtin.resources | nindent 6 }}
    securityContext:
      {{- include "netwarden.containerSecurityContext" $ctx | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
volumes:
  # `netwarden certs` writes the pair here before it is stored; the root filesystem is read-only.
  - name: tmp
    emptyDir:
      medium: Memory
      sizeLimit: 16Mi
{{- end -}}

{{/* Hook RBAC objects and the hook Jobs share these annotations. */}}
{{- define "netwarden.certs.hookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade,post-install,post-upgrade
helm.sh/hook-weight: "-10"
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}
