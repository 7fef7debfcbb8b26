{{/* Names, labels and the rendered configuration file shared by the templates. */}}

{{- define "powerplanner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "powerplanner.fullname" -}}
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

{{- define "powerplanner.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "powerplanner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: powerplanner
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "planner"). */}}
{{- define "powerplanner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "powerplanner.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "powerplanner.plannerServiceAccountName" -}}
{{- if .Values.planner.serviceAccount.create -}}
{{- default (printf "%s-planner" (include "powerplanner.fullname" .)) .Values.planner.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.planner.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "powerplanner.agentServiceAccountName" -}}
{{- if .Values.agent.serviceAccount.create -}}
{{- default (printf "%s-agent" (include "powerplanner.fullname" .)) .Values.agent.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.agent.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "powerplanner.image" -}}
{{- printf "%s:%s" .repository (default .appVersion .tag) -}}
{{- end -}}

{{/* Namespace of the DynamoGraphDeployment: config.kubernetes.namespace, else the release namespace. */}}
{{- define "powerplanner.dgdNamespace" -}}
{{- $k8s := default (dict) .Values.config.kubernetes -}}
{{- default .Release.Namespace $k8s.namespace -}}
{{- end -}}

{{- define "powerplanner.adminSecretName" -}}
{{- default (printf "%s-admin" (include "powerplanner.fullname" .)) .Values.planner.admin.existingSecret -}}
{{- end -}}

{{/*
The configuration file. User values come first; the chart then sets the fields that must agree with the
objects it renders (ports, mounted paths, the admin token file).
*/}}
{{- define "powerplanner.config" -}}
{{- $cfg := deepCopy (default (dict) .Values.config) -}}
{{- if not (and $cfg.budget $cfg.budget.watts) -}}
{{- fail "config.budget.watts is required: set the GPU power budget in watts, e.g. --set config.budget.watts=16000" -}}
{{- end -}}
{{- $k8s := default (dict) $cfg.kubernetes -}}
{{- $_ := set $k8s "namespace" (include "powerplanner.dgdNamespace" .) -}}
{{- $_ := set $cfg "kubernetes" $k8s -}}
{{- $_ := set $cfg "serve" (dict "metrics_bind" (printf "0.0.0.0:%d" (int .Values.planner.metricsPort))) -}}
{{- $budget := $cfg.budget -}}
{{- if .Values.planner.admin.enabled -}}
{{- $_ := set $budget "admin" (dict "enabled" true "bind" (printf "0.0.0.0:%d" (int .Values.planner.admin.port)) "token_file" (printf "/etc/powerplanner-admin/%s" .Values.planner.admin.secretKey)) -}}
{{- else -}}
{{- $_ := set $budget "admin" (dict "enabled" false) -}}
{{- end -}}
{{- $agent := default (dict) $cfg.agent -}}
{{- $_ := set $agent "metrics_bind" (printf "0.0.0.0:%d" (int .Values.agent.metricsPort)) -}}
{{- $_ := set $agent "state_file" (printf "%s/agent-state.json" (trimSuffix "/" .Values.agent.stateDir)) -}}
{{- $_ := set $agent "kubelet_socket" (printf "%s/kubelet.sock" (trimSuffix "/" .Values.agent.podResourcesPath)) -}}
{{- $_ := set $cfg "agent" $agent -}}
{{- toYaml $cfg -}}
{{- end -}}
