{{/*
Chart name, truncated to 63 characters (DNS label limit).
*/}}
{{- define "zsp-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: the release name, with the chart name appended unless
the release name already contains it; 63 characters at most. Names derived from it
(`-webhook`, `-metrics`) are truncated to 63 as well.
*/}}
{{- define "zsp-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "zsp-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the operator's pods; they never change across upgrades.
*/}}
{{- define "zsp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zsp-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels on every object of the chart.
*/}}
{{- define "zsp-operator.labels" -}}
helm.sh/chart: {{ include "zsp-operator.chart" . }}
{{ include "zsp-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: zsp-operator
{{- end }}

{{- define "zsp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zsp-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name the existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "zsp-operator.webhookServiceName" -}}
{{- printf "%s-webhook" (include "zsp-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zsp-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "zsp-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zsp-operator.auditServiceName" -}}
{{- printf "%s-audit" (include "zsp-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Where the audit webhook's Secrets are mounted: the serving certificate (a directory, as
--audit-webhook-cert-dir wants), the bearer token and the client CA (files).
*/}}
{{- define "zsp-operator.auditCertDir" -}}
/etc/zsp-operator/audit-tls
{{- end }}

{{- define "zsp-operator.auditTokenFile" -}}
{{- printf "/etc/zsp-operator/audit-token/%s" .Values.auditWebhook.tokenSecret.key }}
{{- end }}

{{- define "zsp-operator.auditClientCAFile" -}}
{{- printf "/etc/zsp-operator/audit-client-ca/%s" .Values.auditWebhook.clientCASecret.key }}
{{- end }}

{{/*
The audit webhook's values, checked once more here for `--skip-schema-validation`; renders
nothing.
*/}}
{{- define "zsp-operator.auditWebhookChecks" -}}
{{- $aw := .Values.auditWebhook }}
{{- if $aw.enabled }}
{{- if not $aw.certSecret }}
{{- fail "auditWebhook.certSecret: name the kubernetes.io/tls Secret the audit webhook serves (the API server posts audit events over TLS only)" }}
{{- end }}
{{- if not (or $aw.tokenSecret.name $aw.clientCASecret.name) }}
{{- fail "auditWebhook: set tokenSecret.name or clientCASecret.name (or both): the audit webhook believes only the API server" }}
{{- end }}
{{- $p := .Values.ports }}
{{- if has (int $aw.port) (list (int $p.webhook) (int $p.metrics) (int $p.health)) }}
{{- fail (printf "auditWebhook.port: %d is already one of ports.webhook, ports.metrics, ports.health" (int $aw.port)) }}
{{- end }}
{{- if and (eq $aw.service.type "ClusterIP") (not (kindIs "invalid" $aw.service.nodePort)) }}
{{- fail "auditWebhook.service.nodePort: only a NodePort or LoadBalancer Service has a node port" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Secret of the webhook's serving certificate; the operator's own default is "<service>-tls".
*/}}
{{- define "zsp-operator.webhookSecretName" -}}
{{- default (printf "%s-tls" (include "zsp-operator.webhookServiceName" .)) .Values.webhook.certificate.secretName | trunc 253 }}
{{- end }}

{{- define "zsp-operator.certManager" -}}
{{- if eq .Values.webhook.certificate.source "cert-manager" }}true{{ end }}
{{- end }}

{{- define "zsp-operator.certificateName" -}}
{{- printf "%s-webhook" (include "zsp-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zsp-operator.issuerName" -}}
{{- printf "%s-selfsigned" (include "zsp-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zsp-operator.leaseName" -}}
{{- default (include "zsp-operator.fullname" .) .Values.operator.leaderElection.leaseName }}
{{- end }}

{{/*
The image reference: a digest pins it; otherwise the tag, defaulting to the appVersion.
*/}}
{{- define "zsp-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Annotations that let cert-manager's CA injector fill the caBundle of a webhook configuration.
*/}}
{{- define "zsp-operator.webhookAnnotations" -}}
{{- if include "zsp-operator.certManager" . }}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "zsp-operator.certificateName" .) }}
{{- end }}
{{- end }}

{{/*
clientConfig of one webhook: the webhook Service, and the path kopf serves the handler on
(`/<handler id>`).
*/}}
{{- define "zsp-operator.clientConfig" -}}
clientConfig:
  service:
    namespace: {{ .root.Release.Namespace }}
    name: {{ include "zsp-operator.webhookServiceName" .root }}
    port: {{ .root.Values.service.webhook.port }}
    path: /{{ .id }}
{{- end }}
