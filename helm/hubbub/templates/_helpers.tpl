{{/* Names. */}}
{{- define "hubbub.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- /* 38: "-gateway-peers" must fit a 63-byte name, and a StatefulSet's pods a 63-byte revision label. */ -}}
{{- .Release.Name | trunc 38 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 38 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hubbub.labels" -}}
app.kubernetes.io/name: hubbub
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "hubbub.selector" -}}
app.kubernetes.io/name: hubbub
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{/* The port each role's internal listener (health, metrics, its API) uses. */}}
{{- define "hubbub.internalPort" -}}
{{- get (dict "gateway" 7705 "room" 7701 "group" 7702 "gift" 7703 "presence" 7704) . -}}
{{- end -}}

{{- define "hubbub.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "hubbub.fullname" .)) -}}
{{- end -}}

{{/* Addresses roles dial. */}}
{{- define "hubbub.roomInstances" -}}
{{- $full := include "hubbub.fullname" . -}}
{{- $list := list -}}
{{- range $i := until (int .Values.room.replicas) -}}
{{- $list = append $list (printf "http://%s-room-%d.%s-room:7701" $full $i $full) -}}
{{- end -}}
{{- toJson $list -}}
{{- end -}}

{{- define "hubbub.address" -}}
{{- printf "http://%s-%s:%s" (include "hubbub.fullname" .root) .role (include "hubbub.internalPort" .role) -}}
{{- end -}}

{{/* A value as TOML: numbers that are whole print without a fraction (Helm
     reads every YAML number as a float, which hubbub's integer settings
     refuse), maps as inline tables. */}}
{{- define "hubbub.tomlValue" -}}
{{- $kind := kindOf . -}}
{{- if eq $kind "string" -}}{{ toJson . }}
{{- else if eq $kind "bool" -}}{{ . }}
{{- else if has $kind (list "float64" "float32") -}}{{ if and (eq (floor .) (float64 .)) (lt (float64 .) 9007199254740992.0) (gt (float64 .) -9007199254740992.0) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if has $kind (list "int" "int64" "int32" "uint64") -}}{{ . }}
{{- else if eq $kind "slice" -}}[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "hubbub.tomlValue" $e }}{{ end }}]
{{- else if eq $kind "map" -}}{ {{- $map := . -}}{{ range $i, $k := keys $map | sortAlpha }}{{ if $i }},{{ end }} {{ toJson $k }} = {{ include "hubbub.tomlValue" (get $map $k) }}{{ end }} }
{{- else -}}{{ fail (printf "a %s cannot be written as TOML" $kind) }}
{{- end -}}
{{- end -}}

{{/* A configuration file: a dict of section -> settings. */}}
{{- define "hubbub.toml" -}}
{{- range $section, $settings := . }}
[{{ $section }}]
{{- range $key := keys $settings | sortAlpha }}
{{ $key }} = {{ include "hubbub.tomlValue" (get $settings $key) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The sections every role shares. */}}
{{- define "hubbub.commonConfig" -}}
{{- $c := dict "telemetry" (dict "log" .Values.telemetry.log) -}}
{{- with .Values.telemetry.otlpEndpoint }}{{ $_ := set $c.telemetry "otlp_endpoint" . }}{{ end -}}
{{- if .Values.internalTls.enabled -}}
{{- $_ := set $c "internal_tls" (dict "cert_file" "/etc/hubbub/tls/tls.crt" "key_file" "/etc/hubbub/tls/tls.key" "ca_file" "/etc/hubbub/tls/ca.crt" "require_client_cert" .Values.internalTls.requireClientCert "server_name" .Values.internalTls.serverName) -}}
{{- end -}}
{{- toJson $c -}}
{{- end -}}

{{/* Pod annotations: config checksum, mesh, metrics. */}}
{{- define "hubbub.podAnnotations" -}}
{{- $root := .root -}}
checksum/config: {{ .checksum }}
{{- if $root.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ include "hubbub.internalPort" .role | quote }}
prometheus.io/path: /metrics
{{- if $root.Values.internalTls.enabled }}
prometheus.io/scheme: https
{{- end }}
{{- end }}
{{- if eq $root.Values.mesh.provider "linkerd" }}
linkerd.io/inject: enabled
{{- if eq .role "gateway" }}
# Clients' long streams pass the proxy as plain TCP: no request timeout,
# no idle cut, whatever the client speaks (gRPC, gRPC-web over HTTP/1.1).
config.linkerd.io/opaque-ports: "7700"
{{- end }}
{{- end }}
{{- if eq $root.Values.mesh.provider "istio" }}
proxy.istio.io/config: '{"holdApplicationUntilProxyStarts": true}'
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The container every role runs: the one image, its role, its config,
     its secrets, gRPC probes on its internal port. */}}
{{- define "hubbub.container" -}}
{{- $root := .root -}}
{{- $values := get $root.Values .role -}}
{{- $port := include "hubbub.internalPort" .role -}}
- name: {{ .role }}
  image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}"
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args: [{{ .role | quote }}, "--config", "/etc/hubbub/hubbub.toml"]
  ports:
    {{- if eq .role "gateway" }}
    - {name: public, containerPort: 7700, protocol: TCP}
    {{- end }}
    - {name: internal, containerPort: {{ $port }}, protocol: TCP}
  env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: HUBBUB_INTERNAL_KEY
      valueFrom: {secretKeyRef: {name: {{ include "hubbub.secretName" $root }}, key: internal-key}}
    {{- if eq .role "gateway" }}
    - name: HUBBUB_JWT_SECRET
      valueFrom: {secretKeyRef: {name: {{ include "hubbub.secretName" $root }}, key: jwt-secret}}
    - name: HUBBUB_GATEWAY__ID
      value: $(POD_NAME)
    - name: HUBBUB_GATEWAY__ADVERTISE
      value: http://$(POD_NAME).{{ include "hubbub.fullname" $root }}-gateway-peers:7705
    {{- end }}
    {{- if eq .role "room" }}
    - name: HUBBUB_ROOM__ADVERTISE
      value: http://$(POD_NAME).{{ include "hubbub.fullname" $root }}-room:7701
    {{- end }}
    {{- if or (eq .role "group") (eq .role "gift") }}
    - name: HUBBUB_{{ upper .role }}__STORE__DATABASE_URL
      valueFrom: {secretKeyRef: {name: {{ include "hubbub.secretName" $root }}, key: database-url}}
    {{- end }}
    {{- if and (eq .role "presence") (eq $root.Values.presence.store "redis") }}
    - name: HUBBUB_PRESENCE__REDIS_URL
      valueFrom: {secretKeyRef: {name: {{ include "hubbub.secretName" $root }}, key: redis-url}}
    {{- end }}
    {{- with $values.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- /* Kubernetes' gRPC probes speak plaintext: with TLS between roles,
       the port is probed open instead (a draining role still leaves its
       Service at once: its endpoints go on termination). */}}
  {{- $probe := ternary (dict "tcpSocket" (dict "port" (int $port))) (dict "grpc" (dict "port" (int $port))) $root.Values.internalTls.enabled }}
  startupProbe:
    {{- toYaml $probe | nindent 4 }}
    # A replica without `migrate_on_start` waits here for `hubbub migrate`.
    periodSeconds: 5
    failureThreshold: 120
  readinessProbe:
    {{- toYaml $probe | nindent 4 }}
    periodSeconds: 5
    failureThreshold: 2
  livenessProbe:
    {{- toYaml $probe | nindent 4 }}
    periodSeconds: 10
    failureThreshold: 6
  {{- if and (eq .role "gateway") (gt (int $values.preStopSleepSeconds) 0) }}
  lifecycle:
    preStop:
      sleep: {seconds: {{ $values.preStopSleepSeconds }}}
  {{- end }}
  resources:
    {{- toYaml $values.resources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - {name: config, mountPath: /etc/hubbub/hubbub.toml, subPath: hubbub.toml, readOnly: true}
    - {name: tmp, mountPath: /tmp}
    {{- if $root.Values.internalTls.enabled }}
    - {name: tls, mountPath: /etc/hubbub/tls, readOnly: true}
    {{- end }}
    {{- if and (eq .role "gateway") $root.Values.gateway.publicTlsSecret }}
    - {name: public-tls, mountPath: /etc/hubbub/public-tls, readOnly: true}
    {{- end }}
{{- end -}}

{{- define "hubbub.volumes" -}}
- name: config
  configMap: {name: {{ include "hubbub.fullname" .root }}-{{ .role }}}
- name: tmp
  emptyDir: {sizeLimit: 64Mi}
{{- if .root.Values.internalTls.enabled }}
- name: tls
  secret: {secretName: {{ required "internalTls.existingSecret is required with internalTls.enabled" .root.Values.internalTls.existingSecret }}}
{{- end }}
{{- if and (eq .role "gateway") .root.Values.gateway.publicTlsSecret }}
- name: public-tls
  secret: {secretName: {{ .root.Values.gateway.publicTlsSecret }}}
{{- end }}
{{- end -}}

{{/* The pod spec's placement and security, the same for every role. */}}
{{- define "hubbub.podCommon" -}}
{{- $root := .root -}}
{{- $values := get $root.Values .role -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "hubbub.selector" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "hubbub.selector" . | nindent 8 }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
