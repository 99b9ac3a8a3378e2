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

{{- define "hookfan.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hookfan.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hookfan.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Redis. */}}
{{- define "hookfan.redisURL" -}}
{{- if .Values.redis.external.url -}}
{{- .Values.redis.external.url -}}
{{- else -}}
{{- printf "redis://%s-redis:6379/0" (include "hookfan.fullname" .) -}}
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
{{- fail "redis.external.tls.enabled=true needs an external Redis: set redis.external.url to its rediss:// URL (the built-in Redis speaks no TLS), or set redis.external.tls.enabled=false" -}}
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

{{- define "hookfan.workerGrace" -}}
{{- $limit := int (include "hookfan.taskTimeLimit" .) -}}
{{- $grace := .Values.worker.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $grace -}}
{{- add $limit 30 -}}
{{- else if le (int $grace) $limit -}}
{{- fail (printf "worker.terminationGracePeriodSeconds (%d) must exceed the task time limit 4*delivery.timeoutSeconds+20 = %d s, or running attempts are killed on shutdown" (int $grace) $limit) -}}
{{- else -}}
{{- int $grace -}}
{{- end -}}
{{- end -}}

{{/*
Redis settings travel as HOOKFAN_* variables rather than flags so that `kubectl exec ... hookfan
deadletters list` in any hookfan container finds the same Redis. The password is a mounted file.
*/}}
{{- define "hookfan.redisEnv" -}}
- name: HOOKFAN_REDIS_URL
  value: {{ include "hookfan.redisURL" . | quote }}
{{- if .Values.redis.auth.existingSecret }}
- name: HOOKFAN_REDIS_PASSWORD_FILE
  value: {{ include "hookfan.redisPasswordPath" . }}
{{- end }}
{{- range (include "hookfan.redisTLSFiles" . | trim | splitList "\n" | compact) }}
{{- $f := splitList " " . }}
- name: {{ index $f 0 }}
  value: {{ printf "%s/%s" (include "hookfan.redisTLSDir" $) (index $f 1) }}
{{- end }}
{{- end -}}

{{/*
Flower's broker URL (Celery reads it with kombu). The password comes from $(REDIS_PASSWORD),
which Kubernetes expands at container start. For rediss:// the TLS options travel in the query,
which kombu's URL parser turns into the redis transport's ssl options: without them kombu would
connect with certificate checks off.
*/}}
{{- define "hookfan.flowerBrokerURL" -}}
{{- $url := include "hookfan.redisURL" . -}}
{{- if .Values.redis.auth.existingSecret -}}
{{- $url = regexReplaceAll "^(rediss?)://" $url "${1}://:$(REDIS_PASSWORD)@" -}}
{{- end -}}
{{- if hasPrefix "rediss://" $url -}}
{{- $query := list "ssl_cert_reqs=required" -}}
{{- $names := dict "HOOKFAN_REDIS_TLS_CA_FILE" "ssl_ca_certs" "HOOKFAN_REDIS_TLS_CERT_FILE" "ssl_certfile" "HOOKFAN_REDIS_TLS_KEY_FILE" "ssl_keyfile" -}}
{{- range (include "hookfan.redisTLSFiles" . | trim | splitList "\n" | compact) -}}
{{- $f := splitList " " . -}}
{{- $query = append $query (printf "%s=%s/%s" (get $names (index $f 0)) (include "hookfan.redisTLSDir" $) (index $f 1)) -}}
{{- end -}}
{{- $url = printf "%s?%s" $url (join "&" $query) -}}
{{- end -}}
{{- $url -}}
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
{{- if .Values.redis.auth.existingSecret }}
- name: redis-password
  secret:
    secretName: {{ .Values.redis.auth.existingSecret }}
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
{{- if .Values.redis.auth.existingSecret }}
- name: redis-password
  mountPath: /etc/hookfan/redis
  readOnly: true
{{- end }}
{{- include "hookfan.redisTLSVolumeMount" . }}
{{- end -}}

{{/*
Processes with several Python processes per pod (gunicorn, Celery prefork) keep Prometheus
samples in PROMETHEUS_MULTIPROC_DIR. It must be empty at start: an emptyDir survives a container
restart, and stale files would carry old counters over. So the container wipes it, then execs.
*/}}
{{- define "hookfan.multiprocCommand" -}}
command:
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
