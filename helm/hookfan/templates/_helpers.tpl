{{/* Names and labels. */}}
{{- define "hookfan.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hookfan.fullname" -}}
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

{{- define "hookfan.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hookfan.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hookfan.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "hookfan.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hookfan
{{- end -}}

{{/* Labels of one component: call with (dict "ctx" $ "component" "app"). */}}
{{- define "hookfan.componentLabels" -}}
{{ include "hookfan.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hookfan.componentSelector" -}}
{{ include "hookfan.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The user's podLabels (global, then the component's) for a pod template. */}}
{{- define "hookfan.extraPodLabels" -}}
{{- with .ctx.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- with (index .ctx.Values .component).podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Where a component's pods run: priorityClassName, nodeSelector, tolerations, affinity (the
component's own, else its podAntiAffinityPreset "soft" or "hard": one pod per node, preferred or
required) and topologySpreadConstraints (an entry without a labelSelector gets the component's).
Call with (dict "ctx" $ "component" "app").
*/}}
{{- define "hookfan.podScheduling" -}}
{{- $v := index .ctx.Values .component -}}
{{- $selector := dict "matchLabels" (include "hookfan.componentSelector" . | fromYaml) -}}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" $selector -}}
{{- $preset := dig "podAntiAffinityPreset" "" $v -}}
{{- if $v.affinity }}
affinity:
  {{- toYaml $v.affinity | nindent 2 }}
{{- else if eq $preset "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          {{- toYaml $term | nindent 10 }}
{{- else if eq $preset "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - {{- toYaml $term | nindent 8 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range . }}
  - {{- toYaml (merge (dict) . (dict "labelSelector" $selector)) | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* A component's pod securityContext: its own podSecurityContext if set, else the global one
(a replacement, not a merge: a merge cannot turn a global true into false). */}}
{{- define "hookfan.podSecurityContext" -}}
{{- toYaml ((index .ctx.Values .component).podSecurityContext | default .ctx.Values.podSecurityContext) -}}
{{- end -}}

{{- define "hookfan.securityContext" -}}
{{- toYaml ((index .ctx.Values .component).securityContext | default .ctx.Values.securityContext) -}}
{{- end -}}

{{/* What every hookfan pod spec shares ahead of its containers. */}}
{{- define "hookfan.podSpecHead" -}}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "hookfan.podSecurityContext" . | nindent 2 }}
{{- include "hookfan.podScheduling" . }}
{{- end -}}

{{/* A hookfan container's envFrom, extraArgs-free parts: envFrom and securityContext. */}}
{{- define "hookfan.containerExtras" -}}
{{- with (index .ctx.Values .component).envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "hookfan.securityContext" . | nindent 2 }}
{{- end -}}

{{- define "hookfan.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hookfan.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, and @digest when image.digest is set (the kubelet then pulls by digest). */}}
{{- define "hookfan.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- with .Values.image.digest }}@{{ . }}{{ end -}}
{{- end -}}

{{/* Redis. */}}
{{/* "true" when the chart deploys its own Redis: neither an external one nor Sentinels given. */}}
{{- define "hookfan.builtinRedis" -}}
{{- if not (or .Values.redis.external.url .Values.redis.sentinel.enabled) -}}true{{- end -}}
{{- end -}}

{{/* --redis-url. Through Sentinel only its scheme, database and password count: without
redis.external.url its host is the master name, which nothing resolves. */}}
{{- define "hookfan.redisURL" -}}
{{- if .Values.redis.external.url -}}
{{- .Values.redis.external.url -}}
{{- else if .Values.redis.sentinel.enabled -}}
{{- printf "redis://%s/0" .Values.redis.sentinel.masterName -}}
{{- else -}}
{{- printf "redis://%s-redis:6379/0" (include "hookfan.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
The Secret holding the Redis password: redis.auth.existingSecret if set, else for the built-in
Redis the one the chart generates (redis-secret.yaml); empty for an external or Sentinel-managed
Redis without one.
*/}}
{{- define "hookfan.redisPasswordSecret" -}}
{{- if .Values.redis.auth.existingSecret -}}
{{- .Values.redis.auth.existingSecret -}}
{{- else if include "hookfan.builtinRedis" . -}}
{{- printf "%s-redis-auth" (include "hookfan.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
A generated secret value that survives upgrades, base64-encoded: the live Secret's value when
`lookup` finds one (helm install/upgrade against a cluster), else a new random one (the first
install; `helm template` and GitOps tools that render without a cluster, which is why those
must use an existingSecret). Call with (dict "ctx" $ "name" "<secret>" "key" "<key>" "prefix"
"<text before the random part>").
*/}}
{{- define "hookfan.keptSecretValue" -}}
{{- $live := lookup "v1" "Secret" .ctx.Release.Namespace .name | default dict -}}
{{- $data := get $live "data" | default dict -}}
{{- if hasKey $data .key -}}
{{- index $data .key -}}
{{- else -}}
{{- printf "%s%s" (.prefix | default "") (randAlphaNum 32) | b64enc -}}
{{- end -}}
{{- end -}}

{{- define "hookfan.redisPasswordPath" -}}/etc/hookfan/redis/password{{- end -}}

{{- define "hookfan.redisTLSDir" -}}/etc/hookfan/redis-tls{{- end -}}

{{/*
TLS to an external Redis from redis.external.tls: the files of the Secret that are used, as
lines "<env variable> <file name in the mount> <key in the Secret>" (the CA only if caKey is set,
the client pair only if certKey and keyKey are). Fails on values that cannot work together.
*/}}
{{- define "hookfan.redisTLSFiles" -}}
{{- $tls := .Values.redis.external.tls -}}
{{- if $tls.enabled -}}
{{- if not .Values.redis.external.url -}}
{{- fail "redis.external.tls.enabled=true needs an external Redis: set redis.external.url to its rediss:// URL (the built-in Redis speaks no TLS; with redis.sentinel.enabled only the URL's scheme and database count), or set redis.external.tls.enabled=false" -}}
{{- end -}}
{{- if not (hasPrefix "rediss://" .Values.redis.external.url) -}}
{{- fail (printf "redis.external.tls.enabled=true needs a rediss:// redis.external.url (it is %q): write the URL with rediss://, or set redis.external.tls.enabled=false" (include "hookfan.redisURL" .)) -}}
{{- end -}}
{{- if not $tls.existingSecret -}}
{{- fail "redis.external.tls.enabled=true needs redis.external.tls.existingSecret: the Secret holding the CA (caKey) and/or the client certificate (certKey, keyKey)" -}}
{{- end -}}
{{- if ne (empty $tls.certKey) (empty $tls.keyKey) -}}
{{- fail "redis.external.tls.certKey and redis.external.tls.keyKey go together: set both (client certificate) or neither" -}}
{{- end -}}
{{- if and (empty $tls.caKey) (empty $tls.certKey) -}}
{{- fail "redis.external.tls.existingSecret is used for nothing: set redis.external.tls.caKey and/or certKey+keyKey, or set redis.external.tls.enabled=false (a rediss:// URL alone verifies Redis against the system CAs)" -}}
{{- end -}}
{{- with $tls.caKey }}
HOOKFAN_REDIS_TLS_CA_FILE ca.crt {{ . }}
{{- end }}
{{- if $tls.certKey }}
HOOKFAN_REDIS_TLS_CERT_FILE tls.crt {{ $tls.certKey }}
HOOKFAN_REDIS_TLS_KEY_FILE tls.key {{ $tls.keyKey }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* The task time limit the worker applies (DeliverySettings.task_time_limit in
hookfan/config.py): twice the lease (2*timeout+5) plus 10, that is 4*timeout+20. */}}
{{- define "hookfan.taskTimeLimit" -}}
{{- add (mul 4 (int .Values.delivery.timeoutSeconds)) 20 -}}
{{- end -}}

{{/*
The worker's shutdown, one formula (tests/deploy/test_chart_shutdown.py checks it):
  grace   = worker.terminationGracePeriodSeconds, or task time limit + 30 when unset
  timeout = grace - 20   (--graceful-shutdown-timeout)
After SIGTERM the worker lets running attempts finish for `timeout` s; its backstop then kills
what is left 15 s later (ShutdownStep.BACKSTOP_MARGIN in hookfan/worker/celeryapp.py), and
5 s remain before the kubelet's SIGKILL. An attempt runs at most the task time limit, so
timeout must be at least that: grace >= task time limit + 20.
*/}}
{{- define "hookfan.workerGrace" -}}
{{- $limit := int (include "hookfan.taskTimeLimit" .) -}}
{{- $grace := .Values.worker.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $grace -}}
{{- add $limit 30 -}}
{{- else if lt (int $grace) (add $limit 20) -}}
{{- fail (printf "worker.terminationGracePeriodSeconds (%d) must be at least the task time limit 4*delivery.timeoutSeconds+20 = %d s plus 20 s for the worker's exit (%d), or running attempts are killed on shutdown" (int $grace) $limit (add $limit 20)) -}}
{{- else -}}
{{- int $grace -}}
{{- end -}}
{{- end -}}

{{- define "hookfan.workerShutdownTimeout" -}}
{{- sub (int (include "hookfan.workerGrace" .)) 20 -}}
{{- end -}}

{{/*
Redis settings travel as HOOKFAN_* variables rather than flags so that `kubectl exec ... hookfan
deadletters list` in any hookfan container finds the same Redis. The password is a mounted file.
*/}}
{{- define "hookfan.redisEnv" -}}
- name: HOOKFAN_REDIS_URL
  value: {{ include "hookfan.redisURL" . | quote }}
{{- include "hookfan.sentinelEnv" . }}
{{- if include "hookfan.redisPasswordSecret" . }}
- name: HOOKFAN_REDIS_PASSWORD_FILE
  value: {{ include "hookfan.redisPasswordPath" . }}
{{- end }}
{{- range (include "hookfan.redisTLSFiles" . | trim | splitList "\n" | compact) }}
{{- $f := splitList " " . }}
- name: {{ index $f 0 }}
  value: {{ printf "%s/%s" (include "hookfan.redisTLSDir" $) (index $f 1) }}
{{- end }}
{{- end -}}

{{/* The Sentinels and the master name, for every process, when redis.sentinel.enabled. */}}
{{- define "hookfan.sentinelEnv" -}}
{{- if .Values.redis.sentinel.enabled }}
- name: HOOKFAN_REDIS_SENTINEL
  value: {{ join "," .Values.redis.sentinel.hosts | quote }}
- name: HOOKFAN_REDIS_SENTINEL_MASTER
  value: {{ .Values.redis.sentinel.masterName | quote }}
{{- end }}
{{- end -}}

{{/*
Flower's broker URL (Celery reads it with kombu). The password comes from $(REDIS_PASSWORD),
which Kubernetes expands at container start. For rediss:// the TLS options travel in the query,
which kombu's URL parser turns into the redis transport's ssl options: without them kombu would
connect with certificate checks off. Through Sentinel it is kombu's
sentinel://HOST:PORT/DB;sentinel://... with the password, database and TLS query on every
Sentinel's URL: kombu takes them from the URL it switches to when one Sentinel is down. The
master name is a transport option (files/flower_sentinel.py).
*/}}
{{- define "hookfan.flowerBrokerURL" -}}
{{- $url := include "hookfan.redisURL" . -}}
{{- $auth := "" -}}
{{- if include "hookfan.redisPasswordSecret" . -}}
{{- $auth = ":$(REDIS_PASSWORD)@" -}}
{{- end -}}
{{- $query := "" -}}
{{- if hasPrefix "rediss://" $url -}}
{{- $params := list "ssl_cert_reqs=required" -}}
{{- $names := dict "HOOKFAN_REDIS_TLS_CA_FILE" "ssl_ca_certs" "HOOKFAN_REDIS_TLS_CERT_FILE" "ssl_certfile" "HOOKFAN_REDIS_TLS_KEY_FILE" "ssl_keyfile" -}}
{{- range (include "hookfan.redisTLSFiles" . | trim | splitList "\n" | compact) -}}
{{- $f := splitList " " . -}}
{{- $params = append $params (printf "%s=%s/%s" (get $names (index $f 0)) (include "hookfan.redisTLSDir" $) (index $f 1)) -}}
{{- end -}}
{{- $query = printf "?%s" (join "&" $params) -}}
{{- end -}}
{{- if .Values.redis.sentinel.enabled -}}
{{- $db := regexFind "/[0-9]+$" $url | default "/0" -}}
{{- $urls := list -}}
{{- range .Values.redis.sentinel.hosts -}}
{{- $urls = append $urls (printf "sentinel://%s%s%s%s" $auth . $db $query) -}}
{{- end -}}
{{- join ";" $urls -}}
{{- else -}}
{{- $scheme := regexFind "^rediss?://" $url -}}
{{- printf "%s%s%s%s" $scheme $auth (trimPrefix $scheme $url) $query -}}
{{- end -}}
{{- end -}}

{{/* Flags every serving hookfan process takes. */}}
{{- define "hookfan.commonArgs" -}}
- --log-level={{ .Values.logLevel }}
- --log-encoding={{ .Values.logEncoding }}
- --metrics-addr=:9556
- --health-addr=:9557
{{- end -}}

{{- define "hookfan.deliveryArgs" -}}
- --delivery-timeout={{ .Values.delivery.timeoutSeconds }}s
- --min-retry-delay={{ .Values.delivery.minRetryDelay }}
- --max-retry-delay={{ .Values.delivery.maxRetryDelay }}
- --max-retry-age={{ .Values.delivery.maxRetryAge }}
{{- end -}}

{{/* Volumes and mounts shared by hookfan containers: writable /tmp, the Redis password and the
Redis TLS files. */}}
{{- define "hookfan.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if include "hookfan.redisPasswordSecret" . }}
- name: redis-password
  secret:
    secretName: {{ include "hookfan.redisPasswordSecret" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.redis.auth.key }}
        path: password
{{- end }}
{{- include "hookfan.redisTLSVolume" . }}
{{- end -}}

{{/* The Secret of redis.external.tls, only the keys in use, under fixed file names. */}}
{{- define "hookfan.redisTLSVolume" -}}
{{- $files := include "hookfan.redisTLSFiles" . | trim | splitList "\n" | compact -}}
{{- if $files }}
- name: redis-tls
  secret:
    secretName: {{ .Values.redis.external.tls.existingSecret }}
    defaultMode: 0440
    items:
    {{- range $files }}
    {{- $f := splitList " " . }}
      - key: {{ index $f 2 | quote }}
        path: {{ index $f 1 }}
    {{- end }}
{{- end }}
{{- end -}}

{{- define "hookfan.redisTLSVolumeMount" -}}
{{- if include "hookfan.redisTLSFiles" . | trim }}
- name: redis-tls
  mountPath: {{ include "hookfan.redisTLSDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "hookfan.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "hookfan.redisPasswordSecret" . }}
- name: redis-password
  mountPath: /etc/hookfan/redis
  readOnly: true
{{- end }}
{{- include "hookfan.redisTLSVolumeMount" . }}
{{- end -}}

{{/*
Processes with several Python processes per pod (gunicorn, Celery prefork) keep Prometheus
samples in PROMETHEUS_MULTIPROC_DIR. It must be empty at start: an emptyDir survives a container
restart, and stale files would carry old counters over. So the container wipes it, then execs,
under tini as PID 1 (the image's entrypoint, which a command replaces).
*/}}
{{- define "hookfan.multiprocCommand" -}}
command:
  - /usr/bin/tini
  - --
  - /bin/sh
  - -c
  - 'find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete && exec hookfan "$@"'
  - hookfan
{{- end -}}

{{- define "hookfan.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: health}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: health}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: health}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}

{{- define "hookfan.servingPorts" -}}
- name: metrics
  containerPort: 9556
  protocol: TCP
- name: health
  containerPort: 9557
  protocol: TCP
{{- end -}}

{{/* Label selector used by PromQL in the alerts: this release's pods only. */}}
{{- define "hookfan.promSelector" -}}
namespace="{{ .Release.Namespace }}",app_kubernetes_io_instance="{{ .Release.Name }}"
{{- end -}}

{{/* The Secret holding --verify-key-file's key: verifyKey.existingSecret, else the generated
one (verify-key-secret.yaml). */}}
{{- define "hookfan.verifyKeySecret" -}}
{{- .Values.verifyKey.existingSecret | default (printf "%s-verify-key" (include "hookfan.fullname" .)) -}}
{{- end -}}

{{/* The operator's and the app's view of the key (no other workload mounts it). */}}
{{- define "hookfan.verifyKeyEnv" -}}
- name: HOOKFAN_VERIFY_KEY_FILE
  value: /etc/hookfan/verify/key
{{- end -}}

{{- define "hookfan.verifyKeyVolume" -}}
- name: verify-key
  secret:
    secretName: {{ include "hookfan.verifyKeySecret" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.verifyKey.key }}
        path: key
{{- end -}}

{{- define "hookfan.verifyKeyMount" -}}
- name: verify-key
  mountPath: /etc/hookfan/verify
  readOnly: true
{{- end -}}
