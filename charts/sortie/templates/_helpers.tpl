{{/*
Names. The release's base name is the release name when it already says
"sortie" (helm install sortie ...), else <release>-sortie; every object is
<base>-<component>.
*/}}
{{- define "sortie.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* sortie.name: the component object name. Call with (list $ "auth"). */}}
{{- define "sortie.name" -}}
{{- printf "%s-%s" (include "sortie.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/* The namespace Workspaces, their Pods and the host runtime live in. */}}
{{- define "sortie.workspaceNamespace" -}}
{{- default (printf "%s-workspaces" .Release.Name | trunc 63 | trimSuffix "-") .Values.workspaces.namespace -}}
{{- end -}}

{{/* name=quantity pairs of a resource map, for the operator's settings. Call with the map. */}}
{{- define "sortie.resourcePairs" -}}
{{- $pairs := list -}}
{{- range $name := list "cpu" "memory" "ephemeral-storage" -}}
{{- with index $ $name }}{{ $pairs = append $pairs (printf "%s=%v" $name .) }}{{ end -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* Labels on every object. Call with (list $ "component"). */}}
{{- define "sortie.labels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sortie
{{ include "sortie.selectorLabels" . }}
{{- with $.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels: stable across upgrades. Call with (list $ "component"). */}}
{{- define "sortie.selectorLabels" -}}
app.kubernetes.io/name: sortie
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* An image reference. Call with (list $ .Values.auth.image). */}}
{{- define "sortie.image" -}}
{{- $ := index . 0 -}}
{{- $img := index . 1 -}}
{{- $registry := ternary $img.registry $.Values.global.image.registry (hasKey $img "registry") -}}
{{- $tag := $img.tag | default $.Values.global.image.tag | default $.Chart.AppVersion -}}
{{- if $img.digest -}}
{{- printf "%s%s@%s" (ternary "" (printf "%s/" $registry) (empty $registry)) $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s%s:%s" (ternary "" (printf "%s/" $registry) (empty $registry)) $img.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
A URL of one of the release's Services, seen from inside the cluster.
Call with (list $ "auth"). With serviceDiscovery=env it uses the variables
Kubernetes puts in every container for the Services that exist when the Pod
starts (for clusters without DNS, such as the local test node).
*/}}
{{- define "sortie.serviceURL" -}}
{{- $ := index . 0 -}}
{{- $svc := include "sortie.name" . -}}
{{- if eq $.Values.serviceDiscovery "env" -}}
{{- $var := $svc | upper | replace "-" "_" -}}
{{- printf "http://$(%s_SERVICE_HOST):$(%s_SERVICE_PORT_HTTP)" $var $var -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%d" $svc $.Release.Namespace (int $.Values.service.port) -}}
{{- end -}}
{{- end -}}

{{/* The Redis URL the services use. */}}
{{- define "sortie.redisURL" -}}
{{- if .Values.redis.enabled -}}
{{- $svc := include "sortie.name" (list . "redis") -}}
{{- if eq .Values.serviceDiscovery "env" -}}
{{- $var := $svc | upper | replace "-" "_" -}}
{{- printf "redis://$(%s_SERVICE_HOST):$(%s_SERVICE_PORT_REDIS)/0" $var $var -}}
{{- else -}}
{{- printf "redis://%s.%s.svc:6379/0" $svc .Release.Namespace -}}
{{- end -}}
{{- else -}}
{{- required "externalRedis.url is required when redis.enabled is false" .Values.externalRedis.url -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key holding the Redis password; empty name: no password. */}}
{{- define "sortie.redisPasswordSecret" -}}
{{- if .Values.redis.enabled -}}
{{- if .Values.redis.auth.enabled -}}
{{- default (include "sortie.name" (list . "redis")) .Values.redis.auth.existingSecret -}}
{{- end -}}
{{- else -}}
{{- .Values.externalRedis.passwordSecret.name -}}
{{- end -}}
{{- end -}}
{{- define "sortie.redisPasswordKey" -}}
{{- if .Values.redis.enabled -}}password{{- else -}}{{ .Values.externalRedis.passwordSecret.key }}{{- end -}}
{{- end -}}

{{/* Env and volumes for Redis, shared by auth and mission-control. */}}
{{- define "sortie.redisEnv" -}}
- name: SORTIE_REDIS_URL
  value: {{ include "sortie.redisURL" . | quote }}
{{- if include "sortie.redisPasswordSecret" . }}
- name: SORTIE_REDIS_PASSWORD_FILE
  value: /etc/sortie/redis/password
{{- end }}
{{- end -}}
{{- define "sortie.redisVolumeMounts" -}}
{{- if include "sortie.redisPasswordSecret" . }}
- name: redis-password
  mountPath: /etc/sortie/redis
  readOnly: true
{{- end }}
{{- end -}}
{{- define "sortie.redisVolumes" -}}
{{- if include "sortie.redisPasswordSecret" . }}
- name: redis-password
  secret:
    secretName: {{ include "sortie.redisPasswordSecret" . }}
    defaultMode: 0440
    items:
      - key: {{ include "sortie.redisPasswordKey" . }}
        path: password
{{- end }}
{{- end -}}

{{/* Authentication env every API service shares. */}}
{{- define "sortie.authnEnv" -}}
{{- if eq .Values.auth.mode "dev" }}
- name: SORTIE_AUTH_DEV_MODE
  value: "true"
{{- else }}
- name: SORTIE_AUTH_JWKS_URL
  value: {{ printf "%s/api/auth/jwks" (include "sortie.serviceURL" (list . "auth")) | quote }}
{{- end }}
- name: SORTIE_AUTH_ISSUER
  value: {{ .Values.auth.issuer | quote }}
- name: SORTIE_AUTH_AUDIENCE
  value: {{ .Values.auth.audience | quote }}
{{- end -}}

{{/* Env every Sortie service shares. */}}
{{- define "sortie.commonEnv" -}}
- name: SORTIE_LISTEN_ADDR
  value: {{ printf ":%d" (int .Values.service.port) | quote }}
- name: SORTIE_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: HOME
  value: /tmp
{{- with .Values.cors.origins }}
- name: SORTIE_CORS_ORIGINS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.trustedProxies }}
- name: SORTIE_TRUSTED_PROXIES
  value: {{ join "," . | quote }}
{{- end }}
{{- end -}}

{{/* The Secret holding the service clients' secrets (auth's clients.json and one key per client). */}}
{{- define "sortie.clientsSecret" -}}
{{- include "sortie.name" (list . "service-clients") -}}
{{- end -}}

{{/* Pod-level settings shared by every Deployment. Call with (list $ .Values.auth). */}}
{{- define "sortie.podSpecCommon" -}}
{{- $ := index . 0 -}}
{{- $c := index . 1 -}}
{{- with $.Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
enableServiceLinks: {{ eq $.Values.serviceDiscovery "env" }}
{{- with $c.priorityClassName | default $.Values.global.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $c.nodeSelector | default $.Values.global.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations | default $.Values.global.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* HTTP probes on the service port. */}}
{{- define "sortie.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 2
  failureThreshold: 60
{{- end -}}

{{/* A PodDisruptionBudget for a scaled component. Call with (list $ "auth" .Values.auth). */}}
{{- define "sortie.pdb" -}}
{{- $ := index . 0 -}}
{{- $c := index . 2 -}}
{{- if and $c.podDisruptionBudget.enabled (gt (int $c.replicas) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "sortie.name" (list $ (index . 1)) }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "sortie.labels" (list $ (index . 1)) | nindent 4 }}
spec:
  {{- if hasKey $c.podDisruptionBudget "maxUnavailable" }}
  maxUnavailable: {{ $c.podDisruptionBudget.maxUnavailable }}
  {{- else }}
  minAvailable: {{ $c.podDisruptionBudget.minAvailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "sortie.selectorLabels" (list $ (index . 1)) | nindent 6 }}
{{- end }}
{{- end -}}

{{/* A ClusterIP Service on the HTTP port. Call with (list $ "auth"). */}}
{{- define "sortie.service" -}}
{{- $ := index . 0 -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "sortie.name" . }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "sortie.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "sortie.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ $.Values.service.port }}
      targetPort: http
      protocol: TCP
{{- end -}}

{{/* A ServiceAccount. Call with (list $ "auth" automount). */}}
{{- define "sortie.serviceAccount" -}}
{{- $ := index . 0 -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "sortie.name" (list $ (index . 1)) }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "sortie.labels" (list $ (index . 1)) | nindent 4 }}
automountServiceAccountToken: {{ index . 2 }}
{{- end -}}

{{/*
A generated secret value kept across upgrades: the existing Secret's value
when there is one, else a fresh random one. Call with
(list $ "secret-name" "key" "random-value"). Returns the base64 value.
*/}}
{{- define "sortie.keepOrGenerate" -}}
{{- $ := index . 0 -}}
{{- $existing := lookup "v1" "Secret" $.Release.Namespace (index . 1) -}}
{{- if and $existing $existing.data (hasKey $existing.data (index . 2)) -}}
{{- index $existing.data (index . 2) -}}
{{- else -}}
{{- index . 3 | b64enc -}}
{{- end -}}
{{- end -}}

{{/*
The route table: path prefix -> component. It must equal api.Routes() in
api/routes.go (test/chart checks the rendered Ingress and HTTPRoute against it).
*/}}
{{- define "sortie.routes" -}}
- {prefix: /api/auth, service: auth}
- {prefix: /api/control, service: mission-control}
- {prefix: /api/providers, service: mission-control}
- {prefix: /api/health, service: mission-control}
- {prefix: /api/workspaces, service: workspace-operator}
- {prefix: /api/stats, service: workspace-operator}
- {prefix: /api/library, service: library}
{{- end -}}
