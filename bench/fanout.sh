#!/usr/bin/env bash
# Runs one fan-out scenario on this machine: a room instance and GATEWAYS
# gateway processes on 127.0.0.1, then hubbub-bench against them; prints the
# bench's JSON line and stops the servers. It does so once per transport of
# the viewers' Connect streams (TRANSPORTS, default "h2 lean": gRPC over
# HTTP/2, then gRPC-web over HTTP/1.1 on the lean path), each against fresh
# servers, so each memory figure starts from the same place.
#
#   bench/fanout.sh [GATEWAYS] -- [hubbub-bench fanout options]
#   TRANSPORTS=lean bench/fanout.sh 1 -- --viewers 19000 --rate 5 --duration 20
#   bench/fanout.sh 1 -- --viewers 1000 --rate 5000 --duration 10
#   ROOM_CAPS=default bench/fanout.sh 1 -- --viewers 1000 --rate 5000   # keep the rooms' delivery caps
#   GATEWAY_SETTINGS="gateway.fanout_threads=1" bench/fanout.sh 6 -- ...  # extra gateway settings
#
# The room's per-viewer caps are lifted unless ROOM_CAPS=default, so that
# throughput runs measure delivery rather than sampling.
# The viewers are guests from a few loopback addresses: the per-address caps
# on guest streams and connections are lifted for them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

gateways=${1:-1}
shift || true
[ "${1:-}" = "--" ] && shift

cargo build --release --quiet -p hubbub -p hubbub-bench
bin=${CARGO_TARGET_DIR:-target}/release
room_port=${ROOM_PORT:-7801}
first_gateway_port=${GATEWAY_PORT:-7810}

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

gateway_settings=()
for setting in ${GATEWAY_SETTINGS:-}; do gateway_settings+=(--set "$setting"); done
caps=()
if [ "${ROOM_CAPS:-lifted}" != default ]; then
  caps=(--set room.limits.delivery_cap_per_sec=1e9 --set room.limits.low_cap_per_sec=1e9
        --set room.limits.publish_cap_per_sec=1e9)
fi
HUBBUB_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
HUBBUB_INTERNAL_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export HUBBUB_JWT_SECRET HUBBUB_INTERNAL_KEY
# The publisher speaks to the room service as the gift ledger and a gateway would.
publish=/hubbub.v1.Room/Publish
HUBBUB_BENCH_GIFT_CREDENTIAL=$("$bin/hubbub" token --role gift --service bench --user bench --call $publish --ttl 2h)
HUBBUB_BENCH_USER_CREDENTIAL=$("$bin/hubbub" token --role gateway --service bench --user bench --call $publish --ttl 2h)
# Batched (the default --publish-calls many): each tick's comments in one
# PublishMany as a gateway's role, each item with its per-call credential;
# gifts in one PublishGifts as the ledger's.
HUBBUB_BENCH_GATEWAY_CREDENTIAL=$("$bin/hubbub" token --role gateway --service bench --call /hubbub.v1.Room/PublishMany --ttl 2h)
HUBBUB_BENCH_LEDGER_CREDENTIAL=$("$bin/hubbub" token --role gift --service bench --call /hubbub.v1.Room/PublishGifts --ttl 2h)
export HUBBUB_BENCH_GIFT_CREDENTIAL HUBBUB_BENCH_USER_CREDENTIAL HUBBUB_BENCH_GATEWAY_CREDENTIAL HUBBUB_BENCH_LEDGER_CREDENTIAL
start_servers() {
  pids=()
  HUBBUB_TELEMETRY__LOG=warn "$bin/hubbub" room --set "room.listen=127.0.0.1:$room_port" \
    --set "room.advertise=http://127.0.0.1:$room_port" "${caps[@]}" >&2 &
  pids+=($!)
  
  addresses=()
  metrics=()
  for i in $(seq 0 $((gateways - 1))); do
    port=$((first_gateway_port + i))
    internal=$((first_gateway_port + 100 + i))
    HUBBUB_TELEMETRY__LOG=warn "$bin/hubbub" gateway \
      --set "gateway.listen=127.0.0.1:$port" --set "gateway.internal_listen=127.0.0.1:$internal" \
      --set "gateway.advertise=http://127.0.0.1:$internal" --set "gateway.id=gateway-$i" \
      --set gateway.session_calls_per_sec=1e9 --set gateway.session_calls_burst=1e9 \
      --set gateway.max_guest_streams_per_address=1000000 --set listener.max_connections_per_address=1000000 \
      --set "gateway.room_instances=[\"http://127.0.0.1:$room_port\"]" "${gateway_settings[@]}" >&2 &
    pids+=($!)
    addresses+=("127.0.0.1:$port")
    metrics+=("127.0.0.1:$internal")
  done
  sleep 1
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "fanout.sh: a server did not start (port in use?)" >&2; exit 1; }
  done
}

for transport in ${TRANSPORTS:-h2 lean}; do
  addresses=()
  metrics=()
  start_servers
  "$bin/hubbub-bench" fanout --transport "$transport" --gateways "$(IFS=,; echo "${addresses[*]}")" --gateway-metrics "$(IFS=,; echo "${metrics[*]}")" --room "127.0.0.1:$room_port" "$@"
  cleanup
done
