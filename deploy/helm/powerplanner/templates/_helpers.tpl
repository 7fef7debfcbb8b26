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

{{/* An image reference from its values (call with (dict "image" .Values.image "key" "image")): the digest
wins over the tag; neither is a render error, so no install runs a placeholder tag. */}}
{{- define "powerplanner.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else if .image.tag -}}
{{- printf "%s:%s" .image.repository (toString .image.tag) -}}
{{- else -}}
{{- fail (printf "%s.tag or %s.digest is required: set the image you pushed, e.g. --set %s.tag=0.1.0 (docs/install.md, section 2)" .key .key .key) -}}
{{- end -}}
{{- end -}}

{{/* Namespace of the DynamoGraphDeployment: config.kubernetes.namespace, else the release namespace. */}}
{{- define "powerplanner.dgdNamespace" -}}
{{- $k8s := default (dict) .Values.config.kubernetes -}}
{{- default .Release.Namespace $k8s.namespace -}}
{{- end -}}

{{- define "powerplanner.adminSecretName" -}}
{{- default (printf "%s-admin" (include "powerplanner.fullname" .)) .Values.planner.admin.existingSecret -}}
{{- end -}}

{{- define "powerplanner.budgetConfigMapName" -}}
{{- printf "%s-budget" (include "powerplanner.fullname" .) -}}
{{- end -}}

{{/* Host part of the admin endpoint's bind address when exposed: the pod's own hostname (spec.hostname), which
the kubelet's /etc/hosts maps to the pod IP only (not loopback, not 0.0.0.0). */}}
{{- define "powerplanner.adminHostname" -}}
powerplanner-planner
{{- end -}}

{{/*
The planner's configuration file (ConfigMap <fullname>-planner-config). User values come first, without the
agent's section (the agents have their own ConfigMap, so an agent setting never touches the planner); the chart
then sets the fields that must agree with the objects it renders (ports, mounted paths, the admin endpoint).
*/}}
{{- define "powerplanner.plannerConfig" -}}
{{- $cfg := omit (deepCopy (default (dict) .Values.config)) "agent" -}}
{{- if not (and $cfg.budget $cfg.budget.watts) -}}
{{- fail "config.budget.watts is required: set the GPU power budget in watts, e.g. --set config.budget.watts=16000" -}}
{{- end -}}
{{- $k8s := default (dict) $cfg.kubernetes -}}
{{- $_ := set $k8s "namespace" (include "powerplanner.dgdNamespace" .) -}}
{{- $_ := set $cfg "kubernetes" $k8s -}}
{{- $_ := set $cfg "serve" (dict "metrics_bind" (printf "0.0.0.0:%d" (int .Values.planner.metricsPort))) -}}
{{- $admin := .Values.planner.admin -}}
{{- $out := dict "enabled" false "state_configmap" (include "powerplanner.budgetConfigMapName" .) -}}
{{- if $admin.enabled -}}
{{- $host := "127.0.0.1" -}}
{{- if $admin.expose -}}
{{- $host = include "powerplanner.adminHostname" . -}}
{{- end -}}
{{- $_ := set $out "enabled" true -}}
{{- $_ := set $out "bind" (printf "%s:%d" $host (int $admin.port)) -}}
{{- $_ := set $out "token_file" (printf "/etc/powerplanner-admin/%s" $admin.secretKey) -}}
{{- if $admin.tls.secretName -}}
{{- $_ := set $out "tls_cert_file" (printf "/etc/powerplanner-admin-tls/%s" $admin.tls.certKey) -}}
{{- $_ := set $out "tls_key_file" (printf "/etc/powerplanner-admin-tls/%s" $admin.tls.keyKey) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg.budget "admin" $out -}}
{{- if include "powerplanner.leaderElection" . -}}
{{- $le := default (dict) $cfg.leader_election -}}
{{- $_ := set $le "enabled" true -}}
{{- $_ := set $le "namespace" .Release.Namespace -}}
{{- $_ := set $cfg "leader_election" $le -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
"true" when planners elect a leader on a Lease in the release namespace: with planner.replicas > 1 always (two
planners must never act at once), or when config.leader_election.enabled asks for it with one replica.
*/}}
{{- define "powerplanner.leaderElection" -}}
{{- $le := default (dict) (default (dict) .Values.config).leader_election -}}
{{- if or (gt (int .Values.planner.replicas) 1) $le.enabled -}}true{{- end -}}
{{- end -}}

{{- define "powerplanner.leaseName" -}}
{{- $cfg := default (dict) .Values.config -}}
{{- $le := default (dict) $cfg.leader_election -}}
{{- $k8s := default (dict) $cfg.kubernetes -}}
{{- default (printf "powerplanner-%s" (default "llm" $k8s.dgd_name)) $le.lease_name -}}
{{- end -}}

{{/*
What rolls the planner: its config without the settings it re-reads from the mounted file while running
(budget.watts, unless budget.reload_config is false). A budget change then reaches the running planner through
the file (no restart); any other planner setting restarts it.
*/}}
{{- define "powerplanner.plannerConfigChecksum" -}}
{{- $cfg := include "powerplanner.plannerConfig" . | fromYaml -}}
{{- if ne (toString $cfg.budget.reload_config) "false" -}}
{{- $_ := unset $cfg.budget "watts" -}}
{{- end -}}
{{- toYaml $cfg | sha256sum -}}
{{- end -}}

{{/*
The agents' configuration file (ConfigMap <fullname>-agent-config): the agent's section only (plus
kubernetes.kubeconfig when set), so no planner setting, and no budget change, rolls the agents.
allowed_namespaces defaults to the DGD's namespace (an empty list allows no namespace).
*/}}
{{- define "powerplanner.agentConfig" -}}
{{- $agent := deepCopy (default (dict) .Values.config.agent) -}}
{{- if not (hasKey $agent "allowed_namespaces") -}}
{{- $_ := set $agent "allowed_namespaces" (list (include "powerplanner.dgdNamespace" .)) -}}
{{- end -}}
{{- $_ := set $agent "metrics_bind" (printf "0.0.0.0:%d" (int .Values.agent.metricsPort)) -}}
{{- $_ := set $agent "state_file" (printf "%s/agent-state.json" (trimSuffix "/" .Values.agent.stateDir)) -}}
{{- $_ := set $agent "kubelet_socket" (printf "%s/kubelet.sock" (trimSuffix "/" .Values.agent.podResourcesPath)) -}}
{{- $cfg := dict "agent" $agent -}}
{{- $k8s := default (dict) .Values.config.kubernetes -}}
{{- if $k8s.kubeconfig -}}
{{- $_ := set $cfg "kubernetes" (dict "kubeconfig" $k8s.kubeconfig) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
