{{/* The configuration file of one role (`.role`): its section, computed
     from the chart (ports, peers, the room ring), over the role's own
     `config` values; the chart's keys win, so probes, Services and
     NetworkPolicies always match what the role listens on and calls. */}}
{{- define "hubbub.roleConfig" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $full := include "hubbub.fullname" $root -}}
{{- $port := include "hubbub.internalPort" .role -}}
{{- $computed := dict "listen" (printf "0.0.0.0:%s" $port) -}}
{{- /* A role switched off is "" (none), never the localhost default. */ -}}
{{- $migrateOnStart := not $v.migrations.enabled -}}
{{- if eq .role "gateway" -}}
{{- $_ := set $computed "listen" "0.0.0.0:7700" -}}
{{- $_ := set $computed "internal_listen" "0.0.0.0:7705" -}}
{{- $_ := set $computed "room_instances" (include "hubbub.roomInstances" $root | fromJsonArray) -}}
{{- $_ := set $computed "peer_address_template" (printf "http://{id}.%s-gateway-peers:7705" $full) -}}
{{- if $v.gateway.publicTlsSecret }}{{ $_ := set $computed "public_tls" (dict "cert_file" "/etc/hubbub/public-tls/tls.crt" "key_file" "/etc/hubbub/public-tls/tls.key") }}{{ end -}}
{{- $_ := set $computed "presence_address" (ternary (include "hubbub.address" (dict "root" $root "role" "presence")) "" $v.presence.enabled) -}}
{{- $_ := set $computed "group_address" (ternary (include "hubbub.address" (dict "root" $root "role" "group")) "" $v.group.enabled) -}}
{{- $_ := set $computed "gift_address" (ternary (include "hubbub.address" (dict "root" $root "role" "gift")) "" $v.gift.enabled) -}}
{{- else if eq .role "room" -}}
{{- $_ := set $computed "instances" (include "hubbub.roomInstances" $root | fromJsonArray) -}}
{{- else if eq .role "group" -}}
{{- $_ := set $computed "presence_address" (ternary (include "hubbub.address" (dict "root" $root "role" "presence")) "" $v.presence.enabled) -}}
{{- $_ := set $computed "store" (dict "migrate_on_start" $migrateOnStart "schema_wait_secs" 600) -}}
{{- else if eq .role "gift" -}}
{{- $_ := set $computed "room_instances" (include "hubbub.roomInstances" $root | fromJsonArray) -}}
{{- $_ := set $computed "presence_address" (ternary (include "hubbub.address" (dict "root" $root "role" "presence")) "" $v.presence.enabled) -}}
{{- $_ := set $computed "store" (dict "migrate_on_start" $migrateOnStart "schema_wait_secs" 600) -}}
{{- end -}}
{{- range $key := list "room_instances_dns" "instances_dns" "peers" "public_tls" }}
{{- if hasKey (get $v $.role).config $key }}{{ fail (printf "%s.config.%s: the chart sets the room ring and the gateway peers itself" $.role $key) }}{{ end }}
{{- end }}
{{- $section := mergeOverwrite (deepCopy (get $v .role).config) $computed -}}
{{- $file := include "hubbub.commonConfig" $root | fromJson -}}
{{- $_ := set $file .role $section -}}
# hubbub {{ .role }}: rendered by the chart; secrets come from the environment.
{{- include "hubbub.toml" $file }}
{{- end -}}
