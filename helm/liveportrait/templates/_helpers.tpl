{{/* Names */}}
{{- define "liveportrait.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "liveportrait.fullname" -}}
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

{{- define "liveportrait.triton.fullname" -}}{{ include "liveportrait.fullname" . }}-triton{{- end -}}
{{- define "liveportrait.orchestrator.fullname" -}}{{ include "liveportrait.fullname" . }}-orchestrator{{- end -}}
{{- define "liveportrait.web.fullname" -}}{{ include "liveportrait.fullname" . }}-web{{- end -}}
{{- define "liveportrait.gateway.fullname" -}}{{ include "liveportrait.fullname" . }}-gateway{{- end -}}
{{- define "liveportrait.turn.fullname" -}}{{ include "liveportrait.fullname" . }}-turn{{- end -}}
{{- define "liveportrait.redis.fullname" -}}{{ include "liveportrait.fullname" . }}-redis{{- end -}}

{{- define "liveportrait.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels */}}
{{- define "liveportrait.labels" -}}
helm.sh/chart: {{ include "liveportrait.chart" . }}
app.kubernetes.io/name: {{ include "liveportrait.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: liveportrait
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "liveportrait.selectorLabels" -}}
app.kubernetes.io/name: {{ include "liveportrait.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "liveportrait.triton.selectorLabels" -}}
{{ include "liveportrait.selectorLabels" . }}
app.kubernetes.io/component: triton
{{- end -}}

{{- define "liveportrait.orchestrator.selectorLabels" -}}
{{ include "liveportrait.selectorLabels" . }}
app.kubernetes.io/component: orchestrator
{{- end -}}

{{- define "liveportrait.web.selectorLabels" -}}
{{ include "liveportrait.selectorLabels" . }}
app.kubernetes.io/component: web
{{- end -}}

{{- define "liveportrait.gateway.selectorLabels" -}}
{{ include "liveportrait.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "liveportrait.turn.selectorLabels" -}}
{{ include "liveportrait.selectorLabels" . }}
app.kubernetes.io/component: turn
{{- end -}}

{{- define "liveportrait.redis.selectorLabels" -}}
{{ include "liveportrait.selectorLabels" . }}
app.kubernetes.io/component: quota-redis
{{- end -}}

{{/* The Redis that keeps the API keys' quotas (--quota-redis-url): quota.redis.url, or the in-chart one; empty: none. */}}
{{- define "liveportrait.quotaRedisUrl" -}}
{{- $r := .Values.quota.redis -}}
{{- if $r.url -}}
{{- $r.url -}}
{{- else if $r.inChart.enabled -}}
{{- printf "redis://%s.%s.svc.%s:6379/0" (include "liveportrait.redis.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}
{{- end -}}

{{/* The gRPC target of the web page: web.server, or this release's orchestrator Service. */}}
{{- define "liveportrait.web.server" -}}
{{- if .Values.web.server -}}
{{- .Values.web.server -}}
{{- else -}}
{{- printf "%s.%s.svc.%s:%d" (include "liveportrait.orchestrator.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.orchestrator.ports.grpc) -}}
{{- end -}}
{{- end -}}

{{/* The gRPC target of the WebRTC gateway: gateway.server, or this release's orchestrator Service. */}}
{{- define "liveportrait.gateway.server" -}}
{{- if .Values.gateway.server -}}
{{- .Values.gateway.server -}}
{{- else -}}
{{- printf "%s.%s.svc.%s:%d" (include "liveportrait.orchestrator.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.orchestrator.ports.grpc) -}}
{{- end -}}
{{- end -}}

{{/* The gateway's ICE servers (comma-separated URLs): STUN, the external TURN URLs, the in-chart coturn's. */}}
{{- define "liveportrait.gateway.iceServers" -}}
{{- $m := .Values.gateway.media -}}
{{- $urls := concat $m.stunUrls $m.turn.urls -}}
{{- if $m.turn.inChart.enabled -}}
{{- $urls = append $urls (printf "turn:%s:%d?transport=udp" $m.turn.inChart.externalIP (int $m.turn.inChart.port)) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{/* The Secret with the orchestrator's serving certificate: orchestrator.tls.secretName, else (cert-manager) <orchestrator>-tls. */}}
{{- define "liveportrait.orchestrator.tlsSecret" -}}
{{- default (printf "%s-tls" (include "liveportrait.orchestrator.fullname" .)) .Values.orchestrator.tls.secretName -}}
{{- end -}}

{{/* The Secret whose ca.crt the chart's own clients (helm test pod, web page) trust. */}}
{{- define "liveportrait.orchestrator.caSecret" -}}
{{- default (include "liveportrait.orchestrator.tlsSecret" .) .Values.orchestrator.tls.caSecretName -}}
{{- end -}}

{{/*
"true" when the chart's own clients call with TLS: orchestrator.tls.enabled, and a CA to trust (this release's
orchestrator, or orchestrator.tls.caSecretName / secretName for a web page calling web.server).
*/}}
{{- define "liveportrait.orchestrator.clientTlsOn" -}}
{{- $o := .Values.orchestrator -}}
{{- if and $o.tls.enabled (or $o.enabled $o.tls.caSecretName $o.tls.secretName) -}}true{{- end -}}
{{- end -}}

{{/*
TLS pieces of a pod that calls the orchestrator (helm test pod, web page): volumes and volumeMounts (YAML lists), and
the client's flags (--ca, with mTLS --cert/--key; one line). Empty string when the client calls in plaintext. Only
ca.crt of the CA Secret is mounted (never the serving key); with mTLS, the client certificate Secret.
Call with (dict "root" $ "part" "volumes"|"mounts"|"flags").
*/}}
{{- define "liveportrait.orchestrator.clientTls" -}}
{{- $tls := .root.Values.orchestrator.tls -}}
{{- if include "liveportrait.orchestrator.clientTlsOn" .root -}}
{{- if eq .part "volumes" }}
- name: tls
  secret:
    secretName: {{ include "liveportrait.orchestrator.caSecret" .root }}
    items:
      - key: ca.crt
        path: ca.crt
{{- if $tls.clientCA.clientSecretName }}
- name: client-tls
  secret:
    secretName: {{ $tls.clientCA.clientSecretName }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- else if eq .part "mounts" }}
- name: tls
  mountPath: /etc/liveportrait/tls
  readOnly: true
{{- if $tls.clientCA.clientSecretName }}
- name: client-tls
  mountPath: /etc/liveportrait/client-tls
  readOnly: true
{{- end }}
{{- else if eq .part "flags" -}}
--ca /etc/liveportrait/tls/ca.crt
{{- if $tls.clientCA.clientSecretName }} --cert /etc/liveportrait/client-tls/tls.crt --key /etc/liveportrait/client-tls/tls.key{{ end }}
{{- end }}
{{- end -}}
{{- end -}}

{{- define "liveportrait.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "liveportrait.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "liveportrait.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{/* The Triton gRPC target the orchestrator dials: the headless Service, resolved by gRPC's DNS resolver. */}}
{{- define "liveportrait.tritonUrl" -}}
{{- if .Values.orchestrator.tritonUrl -}}
{{- .Values.orchestrator.tritonUrl -}}
{{- else -}}
{{- printf "dns:///%s-grpc.%s.svc.%s:%d" (include "liveportrait.triton.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.triton.ports.grpc) -}}
{{- end -}}
{{- end -}}

{{/* PromQL label matchers selecting this release's pods of a component. */}}
{{- define "liveportrait.triton.podMatcher" -}}
namespace="{{ .Release.Namespace }}",pod=~"{{ include "liveportrait.triton.fullname" . }}-[a-z0-9]+-[a-z0-9]+"
{{- end -}}
{{- define "liveportrait.orchestrator.podMatcher" -}}
namespace="{{ .Release.Namespace }}",pod=~"{{ include "liveportrait.orchestrator.fullname" . }}-[a-z0-9]+-[a-z0-9]+"
{{- end -}}

{{/*
Orchestrator pods for the GPUs this release runs (orchestrator.cpuPerGpuReplica, see values.yaml):
max(floor, ceil(GPUs x cpuPerGpuReplica / orchestrator.resources.requests.cpu)), where GPUs = Triton replicas x
triton.gpu.count and the Triton replicas are triton.autoscaling.minReplicas or .maxReplicas (`bound` "min" / "max"),
or triton.replicaCount without Triton autoscaling. Just `floor` when cpuPerGpuReplica is 0 or Triton is not a GPU
deployment of this release. Call with (dict "root" $ "bound" "min"|"max" "floor" N).
*/}}
{{- define "liveportrait.orchestrator.replicas" -}}
{{- $o := .root.Values.orchestrator -}}
{{- $t := .root.Values.triton -}}
{{- $replicas := int .floor -}}
{{- $perGpu := float64 (default 0 $o.cpuPerGpuReplica) -}}
{{- if and $t.enabled (ne $t.target "cpu") (gt $perGpu 0.0) -}}
{{- $tritonReplicas := $t.replicaCount -}}
{{- if $t.autoscaling.enabled -}}
{{- $tritonReplicas = ternary $t.autoscaling.minReplicas $t.autoscaling.maxReplicas (eq .bound "min") -}}
{{- end -}}
{{- $request := toString (dig "requests" "cpu" "" ($o.resources | default dict)) -}}
{{- $cores := 0.0 -}}
{{- if hasSuffix "m" $request -}}
{{- $cores = divf (float64 (trimSuffix "m" $request)) 1000.0 -}}
{{- else -}}
{{- $cores = float64 $request -}}
{{- end -}}
{{- if le $cores 0.0 -}}
{{- fail (printf "orchestrator.resources.requests.cpu must be set (> 0) when orchestrator.cpuPerGpuReplica is %v: the pods per GPU are derived from it" $o.cpuPerGpuReplica) -}}
{{- end -}}
{{- $gpus := mul (int $tritonReplicas) (int $t.gpu.count) -}}
{{- $replicas = max $replicas (int (ceil (divf (mulf (float64 $gpus) $perGpu) $cores))) -}}
{{- end -}}
{{- $replicas -}}
{{- end -}}

{{/*
Cross-field checks that a JSON schema cannot express. Included from every workload template so that
`helm lint` and `helm template` stop with a clear message.
*/}}
{{- define "liveportrait.validate" -}}
{{- $t := .Values.triton -}}
{{- $o := .Values.orchestrator -}}
{{- if $t.enabled -}}
{{- if and (ne $t.target "cpu") (lt (int $t.gpu.count) 1) -}}
{{- fail (printf "triton.gpu.count must be >= 1 when triton.target is %s (got %v); use triton.target=cpu for a CPU-only cluster" $t.target $t.gpu.count) -}}
{{- end -}}
{{- $src := $t.modelRepository.source -}}
{{- if and (eq $src "pvc") (not $t.modelRepository.pvc.claimName) -}}
{{- fail "triton.modelRepository.pvc.claimName is required when triton.modelRepository.source is pvc" -}}
{{- end -}}
{{- if eq $src "cloud" -}}
{{- if not (regexMatch "^(s3|gs|as)://.+" (toString $t.modelRepository.cloud.uri)) -}}
{{- fail (printf "triton.modelRepository.cloud.uri must be an s3://, gs:// or as:// URI when triton.modelRepository.source is cloud (got %q)" (toString $t.modelRepository.cloud.uri)) -}}
{{- end -}}
{{- end -}}
{{- if eq $src "initContainer" -}}
{{- if or (not $t.modelRepository.initContainer.image.repository) (not $t.modelRepository.initContainer.command) -}}
{{- fail "triton.modelRepository.initContainer.image.repository and .command are required when triton.modelRepository.source is initContainer" -}}
{{- end -}}
{{- end -}}
{{- $drain := add (int $t.drain.preStopSleepSeconds) (int $t.server.exitTimeoutSeconds) -}}
{{- if le (int $t.terminationGracePeriodSeconds) (int $drain) -}}
{{- fail (printf "triton.terminationGracePeriodSeconds (%d) must be larger than triton.drain.preStopSleepSeconds + triton.server.exitTimeoutSeconds (%d), or the kubelet kills Triton before it drains" (int $t.terminationGracePeriodSeconds) (int $drain)) -}}
{{- end -}}
{{- if and $t.autoscaling.enabled (gt (int $t.autoscaling.minReplicas) (int $t.autoscaling.maxReplicas)) -}}
{{- fail "triton.autoscaling.minReplicas must not exceed triton.autoscaling.maxReplicas" -}}
{{- end -}}
{{- end -}}
{{- if $o.enabled -}}
{{- $odrain := add (int $o.drain.preStopSleepSeconds) (int $o.requestTimeoutSeconds) -}}
{{- if le (int $o.terminationGracePeriodSeconds) (int $odrain) -}}
{{- fail (printf "orchestrator.terminationGracePeriodSeconds (%d) must be larger than orchestrator.drain.preStopSleepSeconds + orchestrator.requestTimeoutSeconds (%d)" (int $o.terminationGracePeriodSeconds) (int $odrain)) -}}
{{- end -}}
{{- if $o.tls.enabled -}}
{{- if and (not $o.tls.secretName) (not $o.tls.certManager.enabled) -}}
{{- fail "orchestrator.tls.enabled is true (the default) but no certificate is configured: set orchestrator.tls.secretName to a kubernetes.io/tls Secret (tls.crt, tls.key), or orchestrator.tls.certManager.enabled=true with orchestrator.tls.certManager.issuerRef.name (cert-manager issues it), or orchestrator.tls.enabled=false for plaintext gRPC" -}}
{{- end -}}
{{- if and $o.tls.certManager.enabled (not $o.tls.certManager.issuerRef.name) -}}
{{- fail "orchestrator.tls.certManager.issuerRef.name is required when orchestrator.tls.certManager.enabled is true (an Issuer or ClusterIssuer of cert-manager; set issuerRef.kind to match)" -}}
{{- end -}}
{{- else -}}
{{- if $o.tls.clientCA.secretName -}}
{{- fail "orchestrator.tls.clientCA.secretName (mTLS) needs orchestrator.tls.enabled=true" -}}
{{- end -}}
{{- end -}}
{{- if or (eq (int $o.healthPort) (int $o.ports.grpc)) (eq (int $o.healthPort) (int $o.ports.metrics)) -}}
{{- fail (printf "orchestrator.healthPort (%d) must differ from orchestrator.ports.grpc and orchestrator.ports.metrics" (int $o.healthPort)) -}}
{{- end -}}
{{- if and $o.autoscaling.enabled (gt (int $o.autoscaling.minReplicas) (int $o.autoscaling.maxReplicas)) -}}
{{- fail "orchestrator.autoscaling.minReplicas must not exceed orchestrator.autoscaling.maxReplicas" -}}
{{- end -}}
{{- end -}}
{{- $r := .Values.quota.redis -}}
{{- if and $r.url $r.inChart.enabled -}}
{{- fail "set one of quota.redis.url (an external Redis) and quota.redis.inChart.enabled (a Redis of this release), not both" -}}
{{- end -}}
{{- if and (or $r.url $r.inChart.enabled) (not $o.apiKeys.secretName) -}}
{{- fail "quota.redis keeps the API keys' quotas: it needs orchestrator.apiKeys.secretName" -}}
{{- end -}}
{{- if and .Values.web.enabled (not $o.enabled) (not .Values.web.server) -}}
{{- fail "web.enabled needs orchestrator.enabled or web.server (the gRPC HOST:PORT the page calls)" -}}
{{- end -}}
{{- $g := .Values.gateway -}}
{{- if and $g.enabled (not $o.enabled) (not $g.server) -}}
{{- fail "gateway.enabled needs orchestrator.enabled or gateway.server (the gRPC HOST:PORT it calls)" -}}
{{- end -}}
{{- $turn := $g.media.turn -}}
{{- if and $g.enabled (eq $g.media.mode "turn") (not (or $turn.urls $turn.inChart.enabled)) -}}
{{- fail "gateway.media.mode turn needs a TURN server: gateway.media.turn.urls (external) or gateway.media.turn.inChart.enabled" -}}
{{- end -}}
{{- if and $g.enabled (or $turn.urls $turn.inChart.enabled) (not $turn.secretName) -}}
{{- fail "gateway.media.turn needs secretName: a Secret with keys username and credential (the TURN user)" -}}
{{- end -}}
{{- if and $g.enabled $turn.inChart.enabled (not $turn.inChart.externalIP) -}}
{{- fail "gateway.media.turn.inChart needs externalIP: the address of its node that peers reach" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled -}}
{{- fail "enable only one of metrics.serviceMonitor and metrics.podMonitor (both would scrape every target twice)" -}}
{{- end -}}
{{- end -}}
