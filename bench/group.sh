#!/usr/bin/env bash
# Runs the group chat scenario on this machine: `hubbub all` on free
# loopback ports (the group store on PostgreSQL when DATABASE_URL is set,
# else on SQLite in a temporary directory), then hubbub-bench group against
# its public port; prints the bench's JSON line and stops the server.
#
#   bench/group.sh [hubbub-bench group options]
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/hubbub bench/group.sh --members 1000 --online 50 --rate 200
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --quiet -p hubbub -p hubbub-bench
bin=${CARGO_TARGET_DIR:-target}/release
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

HUBBUB_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
HUBBUB_INTERNAL_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export HUBBUB_JWT_SECRET HUBBUB_INTERNAL_KEY
store=(--set "group.store.data_dir=$tmp")
[ -n "${DATABASE_URL:-}" ] && store+=(--set "group.store.database_url=$DATABASE_URL")
base=${GROUP_BENCH_PORT:-7900}
HUBBUB_TELEMETRY__LOG=warn "$bin/hubbub" all "${store[@]}" \
  --set "gateway.listen=127.0.0.1:$base" --set "gateway.internal_listen=127.0.0.1:$((base + 5))" \
  --set "gateway.advertise=http://127.0.0.1:$((base + 5))" \
  --set "room.listen=127.0.0.1:$((base + 1))" --set "room.advertise=http://127.0.0.1:$((base + 1))" \
  --set "gateway.room_instances=[\"http://127.0.0.1:$((base + 1))\"]" \
  --set "group.listen=127.0.0.1:$((base + 2))" --set "gateway.group_address=http://127.0.0.1:$((base + 2))" \
  --set "gift.listen=127.0.0.1:$((base + 3))" \
  --set "presence.listen=127.0.0.1:$((base + 4))" \
  --set "gateway.presence_address=http://127.0.0.1:$((base + 4))" \
  --set "group.presence_address=http://127.0.0.1:$((base + 4))" \
  --set gateway.presence_report_ms=100 \
  --set gateway.session_calls_per_sec=1e9 --set gateway.session_calls_burst=1e9 >&2 &
pid=$!
sleep 2
kill -0 "$pid" 2>/dev/null || { echo "group.sh: hubbub all did not start (port in use?)" >&2; exit 1; }

"$bin/hubbub-bench" group --gateway "127.0.0.1:$base" "$@"
