{{/*
Names, labels and small pieces shared by the templates. Stage helpers take
(dict "root" $ "stage" "<stage>").
*/}}

{{/* The four pipeline stages, in pipeline order, as a JSON list. */}}
{{- define "hookmesh.stages" -}}
["ingest","router","renderer","dispatcher"]
{{- end -}}

{{- define "hookmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, or the release name alone when it already contains the chart name. */}}
{{- define "hookmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a stage's Deployment, Service, PDB, HPA: <fullname>-<stage> (≤ 63 characters). */}}
{{- define "hookmesh.stageFullname" -}}
{{- printf "%s-%s" (include "hookmesh.fullname" .root) .stage | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hookmesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hookmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hookmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hookmesh.labels" -}}
helm.sh/chart: {{ include "hookmesh.chart" . }}
{{ include "hookmesh.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hookmesh
{{- end -}}

{{- define "hookmesh.stageSelectorLabels" -}}
{{ include "hookmesh.selectorLabels" .root }}
app.kubernetes.io/component: {{ .stage }}
{{- end -}}

{{- define "hookmesh.stageLabels" -}}
{{ include "hookmesh.labels" .root }}
app.kubernetes.io/component: {{ .stage }}
{{- end -}}

{{- define "hookmesh.configMapName" -}}
{{- printf "%s-config" (include "hookmesh.fullname" .) -}}
{{- end -}}

{{/* The Secret every stage reads: existingSecret, or the one this chart creates. */}}
{{- define "hookmesh.secretName" -}}
{{- if .Values.existingSecret -}}
{{- .Values.existingSecret -}}
{{- else -}}
{{- printf "%s-secret" (include "hookmesh.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "hookmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hookmesh.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hookmesh.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Kafka bootstrap servers, required. */}}
{{- define "hookmesh.kafka" -}}
{{- required "config.kafka is required: the single-stage roles need Kafka bootstrap servers (host:port,…)" .Values.config.kafka -}}
{{- end -}}

{{/* Consumer group and input topic of the dispatcher (runtime.rs: group `<prefix>-<stage>`). */}}
{{- define "hookmesh.dispatcherGroup" -}}
{{- printf "%s-dispatcher" .Values.config.topicPrefix -}}
{{- end -}}
{{- define "hookmesh.dispatcherTopic" -}}
{{- printf "%s.requests" .Values.config.topicPrefix -}}
{{- end -}}

{{/* "true" when something other than the Deployment owns the stage's replica count. */}}
{{- define "hookmesh.autoscaled" -}}
{{- $s := index .root.Values .stage -}}
{{- if or $s.autoscaling.enabled (and (eq .stage "dispatcher") .root.Values.keda.enabled) -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when the stage gets a plain HorizontalPodAutoscaler (KEDA brings its own). */}}
{{- define "hookmesh.hpa" -}}
{{- $s := index .root.Values .stage -}}
{{- if and $s.enabled $s.autoscaling.enabled (not (and (eq .stage "dispatcher") .root.Values.keda.enabled)) -}}
true
{{- end -}}
{{- end -}}

{{/* A value is set unless it is null or the empty string (0 and false count as set). */}}
{{- define "hookmesh.isSet" -}}
{{- if and (not (kindIs "invalid" .)) (ne (toString .) "") -}}
true
{{- end -}}
{{- end -}}

{{/*
A scalar as text. Values from YAML files arrive as float64, which Go prints as 1e+06 from a
million on; whole numbers are printed as integers instead.
*/}}
{{- define "hookmesh.str" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* An IntOrString field: 1 stays a number, "50%" a quoted string. */}}
{{- define "hookmesh.intOrString" -}}
{{- $v := include "hookmesh.str" . -}}
{{- if regexMatch "^[0-9]+$" $v -}}
{{- $v -}}
{{- else if regexMatch "^[0-9]+%$" $v -}}
{{- $v | quote -}}
{{- else -}}
{{- fail (printf "%q is neither a number nor a percentage" $v) -}}
{{- end -}}
{{- end -}}

{{/*
Refuses autoscaling settings that cannot work: bounds out of order, no target, or a
utilisation target without the resource request it is a percentage of.
*/}}
{{- define "hookmesh.checkAutoscaling" -}}
{{- $s := index .root.Values .stage -}}
{{- $a := $s.autoscaling -}}
{{- if lt (int $a.minReplicas) 1 -}}
{{- fail (printf "%s.autoscaling.minReplicas must be at least 1" .stage) -}}
{{- end -}}
{{- if lt (int $a.maxReplicas) (int $a.minReplicas) -}}
{{- fail (printf "%s.autoscaling.maxReplicas (%v) is below minReplicas (%v)" .stage $a.maxReplicas $a.minReplicas) -}}
{{- end -}}
{{- /* Under KEDA the resource targets only apply while autoscaling.enabled is on. */ -}}
{{- $resources := or (not .keda) $a.enabled -}}
{{- $cpu := and $resources (include "hookmesh.isSet" $a.targetCPUUtilizationPercentage) -}}
{{- $mem := and $resources (include "hookmesh.isSet" $a.targetMemoryUtilizationPercentage) -}}
{{- if and (not $cpu) (not $mem) (not .keda) -}}
{{- fail (printf "%s.autoscaling: set targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" .stage) -}}
{{- end -}}
{{- if and $cpu (not (dig "requests" "cpu" "" ($s.resources | default dict))) -}}
{{- fail (printf "%s.autoscaling.targetCPUUtilizationPercentage needs %s.resources.requests.cpu: utilisation is a percentage of the request" .stage .stage) -}}
{{- end -}}
{{- if and $mem (not (dig "requests" "memory" "" ($s.resources | default dict))) -}}
{{- fail (printf "%s.autoscaling.targetMemoryUtilizationPercentage needs %s.resources.requests.memory" .stage .stage) -}}
{{- end -}}
{{- end -}}
