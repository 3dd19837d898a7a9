#!/usr/bin/env bash
# Runs the churn scenario on this machine: a throwaway Redis, presence on it,
# a room instance and one gateway on 127.0.0.1, then hubbub-bench churn;
# prints the bench's JSON line and stops everything.
#
#   bench/churn.sh [hubbub-bench churn options]
#   bench/churn.sh --viewers 2000 --rate 20000 --duration 10
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --quiet -p hubbub -p hubbub-bench
bin=${CARGO_TARGET_DIR:-target}/release
redis_port=${REDIS_PORT:-7899}
tmp=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --dir "$tmp" --logfile "$tmp/redis.log" --pidfile "$tmp/redis.pid"
export HUBBUB_TELEMETRY__LOG=warn
HUBBUB_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
HUBBUB_INTERNAL_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export HUBBUB_JWT_SECRET HUBBUB_INTERNAL_KEY
HUBBUB_BENCH_READ_CREDENTIAL=$("$bin/hubbub" token --service bench --scope room.read --ttl 1h)
export HUBBUB_BENCH_READ_CREDENTIAL
"$bin/hubbub" presence --set presence.listen=127.0.0.1:7804 \
  --set "presence.redis_url=redis://127.0.0.1:$redis_port/" >&2 &
pids+=($!)
"$bin/hubbub" room --set room.listen=127.0.0.1:7801 --set room.advertise=http://127.0.0.1:7801 >&2 &
pids+=($!)
"$bin/hubbub" gateway --set gateway.listen=127.0.0.1:7810 --set gateway.internal_listen=127.0.0.1:7811 \
  --set gateway.advertise=http://127.0.0.1:7811 --set gateway.id=gateway-0 \
  --set gateway.session_calls_per_sec=1e9 --set gateway.session_calls_burst=1e9 \
  --set gateway.max_guest_streams_per_address=1000000 --set listener.max_connections_per_address=1000000 \
  --set 'gateway.room_instances=["http://127.0.0.1:7801"]' \
  --set gateway.presence_address=http://127.0.0.1:7804 --set gateway.user_publish_per_sec=1e9 >&2 &
pids+=($!)
sleep 1
for pid in "${pids[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "churn.sh: a server did not start (port in use?)" >&2; exit 1; }
done

"$bin/hubbub-bench" churn --gateway 127.0.0.1:7810 --gateway-metrics 127.0.0.1:7811 --presence 127.0.0.1:7804 --redis "127.0.0.1:$redis_port" "$@"
