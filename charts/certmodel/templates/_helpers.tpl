{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "certmodel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-<chart>", or "<release>" when the release name already holds the chart name. */}}
{{- define "certmodel.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "certmodel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "certmodel.operator.fullname" -}}
{{- printf "%s-operator" (include "certmodel.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "certmodel.inference.fullname" -}}
{{- printf "%s-inference" (include "certmodel.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "certmodel.operator.serviceAccountName" -}}
{{- default (include "certmodel.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- end -}}

{{- define "certmodel.trainer.serviceAccountName" -}}
{{- default (printf "%s-trainer" (include "certmodel.fullname" .)) .Values.trainer.serviceAccount.name -}}
{{- end -}}

{{- define "certmodel.inference.serviceAccountName" -}}
{{- default (include "certmodel.inference.fullname" .) .Values.inference.serviceAccount.name -}}
{{- end -}}

{{- define "certmodel.modelsClaim" -}}
{{- default (printf "%s-models" (include "certmodel.fullname" .)) .Values.models.existingClaim -}}
{{- end -}}

{{- define "certmodel.peeringName" -}}
{{- default (include "certmodel.fullname" .) .Values.operator.peering.name -}}
{{- end -}}

{{- define "certmodel.peered" -}}
{{- if gt (int .Values.operator.replicas) 1 -}}true{{- end -}}
{{- end -}}

{{/* The served line's pointer ConfigMap: the only object the inference pods may read. */}}
{{- define "certmodel.inference.pointerConfigMap" -}}
{{- default (printf "%s-pointer" (required "inference.model is required when inference.enabled" .Values.inference.model)) .Values.inference.pointerConfigMap -}}
{{- end -}}

{{/* Images ------------------------------------------------------------------------------ */}}

{{- define "certmodel.operator.image" -}}
{{- printf "%s:%s" .Values.operator.image.repository (.Values.operator.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "certmodel.runtime.image" -}}
{{- printf "%s:%s" .Values.runtime.image.repository (.Values.runtime.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Labels ------------------------------------------------------------------------------ */}}

{{/* Selector labels: stable for the life of a release (no version, no helm.sh/chart). */}}
{{- define "certmodel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certmodel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "certmodel.labels" -}}
helm.sh/chart: {{ include "certmodel.chart" . }}
{{ include "certmodel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: certmodel
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Call with (dict "ctx" $ "component" "operator"). */}}
{{- define "certmodel.componentSelectorLabels" -}}
{{ include "certmodel.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "certmodel.componentLabels" -}}
{{ include "certmodel.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Pod Security "restricted" --------------------------------------------------------------- */}}

{{- define "certmodel.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "certmodel.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Volumes every pod has: the models claim and a writable /tmp (the root filesystem is not). */}}
{{- define "certmodel.modelsVolume" -}}
- name: models
  persistentVolumeClaim:
    claimName: {{ include "certmodel.modelsClaim" . }}
    readOnly: true
{{- end -}}

{{- define "certmodel.tmpVolume" -}}
- name: tmp
  emptyDir:
    {{- with .sizeLimit }}
    sizeLimit: {{ . }}
    {{- else }} {}
    {{- end }}
{{- end -}}
