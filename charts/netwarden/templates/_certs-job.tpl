{{/*
The pod spec of the certificate Jobs: `netwarden certs sync` in the netwarden image (its
ENTRYPOINT is `netwarden`). Call with (dict "ctx" $ "serviceAccount" "..." "generate" true|false).

`certs sync` reads both Secrets, generates the pair when there is none (only with `generate`:
the install/upgrade hook, whose role may create Secrets), otherwise moves the CA rollover one
step when it is due, and writes CA Secret -> caBundle of both webhooks -> TLS Secret, in that
order. Idempotent: a run with nothing due changes nothing (or heals a caBundle that drifted).
*/}}
{{- define "netwarden.certs.podSpec" -}}
{{- $ctx := .ctx -}}
{{- $ns := $ctx.Release.Namespace -}}
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
    args:
      - certs
      - sync
      - --secret
      - {{ printf "%s/%s" $ns (include "netwarden.tls.secretName" $ctx) | quote }}
      - --ca-secret
      - {{ printf "%s/%s" $ns (include "netwarden.certs.caSecretName" $ctx) | quote }}
      - --mutating
      - {{ include "netwarden.mutatingWebhook.name" $ctx | quote }}
      - --validating
      - {{ include "netwarden.validatingWebhook.name" $ctx | quote }}
      {{- if .generate }}
      - --service
      - {{ include "netwarden.webhook.fullname" $ctx | quote }}
      - --namespace
      - {{ $ns | quote }}
      {{- range include "netwarden.tls.dnsNames" $ctx | fromYamlArray }}
      - --dns
      - {{ . | quote }}
      {{- end }}
      {{- end }}
      - --days
      - {{ $ctx.Values.certificates.builtin.validityDays | quote }}
      - --ca-days
      - {{ $ctx.Values.certificates.builtin.caValidityDays | quote }}
      - --renew-within
      - {{ $ctx.Values.certificates.builtin.renewWithinDays | quote }}
      {{- /* The chart's labels, except managed-by: netwarden writes these Secrets, not Helm. */}}
      {{- range $key, $value := omit (include "netwarden.componentLabels" (dict "ctx" $ctx "component" "certs") | fromYaml) "app.kubernetes.io/managed-by" }}
      - --label
      - {{ printf "%s=%s" $key $value | quote }}
      {{- end }}
    resources:
      {{- toYaml $ctx.Values.certificates.builtin.resources | nindent 6 }}
    securityContext:
      {{- include "netwarden.containerSecurityContext" $ctx | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
volumes:
  # Scratch space for Python; the root filesystem is read-only and `certs sync` keeps keys in memory.
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
