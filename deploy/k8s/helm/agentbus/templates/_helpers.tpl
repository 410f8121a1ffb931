{{/* Names: "<release>" when the release name contains the chart name, else "<release>-agentbus". */}}
{{- define "agentbus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentbus.fullname" -}}
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

{{/* The objects of one service: "<fullname>-<service>". Call with (dict "root" $ "name" $name). */}}
{{- define "agentbus.component" -}}
{{- printf "%s-%s" (include "agentbus.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentbus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentbus.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "agentbus.labels" -}}
{{ include "agentbus.selectorLabels" . }}
app.kubernetes.io/part-of: agentbus
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Labels of chart-wide objects (ConfigMap, Secret). */}}
{{- define "agentbus.commonLabels" -}}
app.kubernetes.io/name: {{ include "agentbus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: agentbus
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "agentbus.image" -}}
{{- $img := .root.Values.image }}
{{- $repo := printf "%s%s" $img.repositoryPrefix .name }}
{{- if $img.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" $img.registry) $repo }}{{ end }}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion $img.tag) }}
{{- end }}

{{- define "agentbus.configName" -}}
{{- printf "%s-config" (include "agentbus.fullname" .) }}
{{- end }}

{{/* The Secret holding the gateway's token signing key. */}}
{{- define "agentbus.authSecretName" -}}
{{- default (printf "%s-auth" (include "agentbus.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "agentbus.natsSecretName" -}}
{{- default (printf "%s-nats" (include "agentbus.fullname" .)) .Values.nats.auth.existingSecret }}
{{- end }}

{{/* Every NATS user whose password the Secret holds: the enabled services, then extraUsers. */}}
{{- define "agentbus.natsUsers" -}}
{{- $users := list }}
{{- range $name, $svc := .Values.services }}
{{- if $svc.enabled }}{{ $users = append $users $name }}{{ end }}
{{- end }}
{{- concat $users .Values.nats.auth.extraUsers | uniq | toJson }}
{{- end }}
