{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "preview-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name, plus the chart name unless the release name already contains it.
"preview-worker" -> preview-worker; "preview-worker-canary" -> preview-worker-canary.
*/}}
{{- define "preview-worker.fullname" -}}
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

{{/*
Chart label value.
*/}}
{{- define "preview-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the life of a release (never add mutable labels here).
*/}}
{{- define "preview-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "preview-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{/*
Labels selecting the release's `helm test` pod.
*/}}
{{- define "preview-worker.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "preview-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}

{{/*
Common labels of every object.
*/}}
{{- define "preview-worker.labels" -}}
helm.sh/chart: {{ include "preview-worker.chart" . }}
{{ include "preview-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ include "preview-worker.imageTag" . | quote }}
app.kubernetes.io/part-of: preview-worker
app.kubernetes.io/managed-by: {{ .Release.Service }}
preview-worker/track: {{ .Values.track }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "preview-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "preview-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image tag: image.tag or the chart's appVersion.
*/}}
{{- define "preview-worker.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
Image reference: repository:tag, or repository@digest when a digest is given.
*/}}
{{- define "preview-worker.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "preview-worker.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the Redis URL (existing or created by the chart).
*/}}
{{- define "preview-worker.redisSecretName" -}}
{{- default (printf "%s-redis" (include "preview-worker.fullname" .)) .Values.redis.existingSecret }}
{{- end }}

{{/*
Name of the data claim (existing or created by the chart).
*/}}
{{- define "preview-worker.dataClaimName" -}}
{{- default (printf "%s-data" (include "preview-worker.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the worker's shutdown grace (rounded up) plus the margin, so the
kubelet never kills a drain that the worker is still allowed to run.
*/}}
{{- define "preview-worker.terminationGracePeriodSeconds" -}}
{{- add (ceil .Values.worker.shutdownGraceSeconds | int) .Values.terminationGraceMarginSeconds }}
{{- end }}

{{/*
True (non-empty) when something else than the Deployment owns the replica count.
*/}}
{{- define "preview-worker.autoscaled" -}}
{{- if or .Values.autoscaling.enabled .Values.keda.enabled }}true{{ end }}
{{- end }}

{{/*
Non-secret worker settings, as the ConfigMap's data (PREVIEW_* of app/settings.py ENV_VARS).
*/}}
{{- define "preview-worker.configData" -}}
{{- $w := .Values.worker -}}
PREVIEW_QUEUE: {{ $w.queue | quote }}
PREVIEW_REDIS_CLUSTER: {{ .Values.redis.cluster | toString | quote }}
PREVIEW_WORKER_CONCURRENCY: {{ $w.concurrency | int64 | toString | quote }}
PREVIEW_QUEUE_MAX: {{ $w.queueMax | int64 | toString | quote }}
DATA_DIR: "/data"
PREVIEW_LEASE_SECONDS: {{ $w.leaseSeconds | toString | quote }}
PREVIEW_REAPER_INTERVAL_SECONDS: {{ $w.reaperIntervalSeconds | toString | quote }}
PREVIEW_JOB_TIMEOUT_SECONDS: {{ $w.jobTimeoutSeconds | toString | quote }}
PREVIEW_SHUTDOWN_GRACE_SECONDS: {{ $w.shutdownGraceSeconds | toString | quote }}
PREVIEW_MAX_PAYLOAD_BYTES: {{ $w.maxPayloadBytes | int64 | toString | quote }}
PREVIEW_ATTEMPTS: {{ $w.attempts | int64 | toString | quote }}
PREVIEW_BACKOFF_SECONDS: {{ $w.backoffSeconds | toString | quote }}
PREVIEW_BACKOFF_MAX_SECONDS: {{ $w.backoffMaxSeconds | toString | quote }}
PREVIEW_HEALTH_HOST: "0.0.0.0"
PREVIEW_HEALTH_PORT: {{ $w.healthPort | int64 | toString | quote }}
PREVIEW_STALL_SECONDS: {{ $w.stallSeconds | toString | quote }}
PREVIEW_DEPTH_REFRESH_SECONDS: {{ $w.depthRefreshSeconds | toString | quote }}
PREVIEW_TRACK: {{ .Values.track | quote }}
PREVIEW_DEFAULT_HANDLER: {{ $w.defaultHandler | quote }}
PREVIEW_ASSETS_DIR: {{ $w.assetsDir | quote }}
PREVIEW_ASSET_HOSTS: {{ join "," $w.assetHosts | quote }}
PREVIEW_ASSET_MAX_BYTES: {{ $w.assetMaxBytes | int64 | toString | quote }}
PREVIEW_ASSET_TIMEOUT_SECONDS: {{ $w.assetTimeoutSeconds | toString | quote }}
PREVIEW_LOG_LEVEL: {{ $w.logLevel | quote }}
PREVIEW_LOG_FORMAT: {{ $w.logFormat | quote }}
{{- end }}

{{/*
A number as PromQL reads it: whole numbers without an exponent (YAML numbers arrive as floats, and
%v would print 2500000 as 2.5e+06).
*/}}
{{- define "preview-worker.promNumber" -}}
{{- if eq (float64 .) (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}
