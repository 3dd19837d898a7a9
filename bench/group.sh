#!/usr/bin/env bash
# Runs the group chat scenario on this machine: `hubbub all` on free
# loopback ports, then hubbub-bench group against its public port; prints
# the bench's JSON line and stops everything it started.
#
# The group store: DATABASE_URL when set; else a throwaway PostgreSQL
# started here with production-like settings (full durability: fsync and
# synchronous commit on; 2 GB shared buffers, large WAL, lz4 WAL
# compression); GROUP_BENCH_STORE=sqlite for SQLite in a temporary
# directory, as `hubbub all` runs by default.
#
# On PostgreSQL it first measures what that server writes raw (pgbench: two
# clients, 1,000 mailbox-shaped rows per transaction, random user ids, the
# same durability, 5 s), printed in the JSON as raw_postgres_rows_per_s.
#
#   bench/group.sh [hubbub-bench group options]
#   bench/group.sh --members 1000 --online 50 --rate 200
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/hubbub bench/group.sh --groups 1000 --members 100
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --quiet -p hubbub -p hubbub-bench
bin=${CARGO_TARGET_DIR:-target}/release
# shellcheck source=scripts/lib/throwaway.sh
. scripts/lib/throwaway.sh
tmp=$(mktemp -d)
chmod 755 "$tmp" # the postgres user must reach its own directory inside
pid=""
pg_data=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  wait 2>/dev/null || true
  stop_postgres
  rm -rf "$tmp"
}
trap cleanup EXIT
if [ -z "${DATABASE_URL:-}" ] && [ "${GROUP_BENCH_STORE:-postgres}" != sqlite ]; then
  start_postgres "$tmp/pg" hubbub_bench shared_buffers=2GB max_wal_size=8GB checkpoint_timeout=30min \
    wal_compression=lz4
  say "group store: throwaway PostgreSQL on 127.0.0.1:$pg_port"
fi

# Raw rows/s of the store, for scale: a table shaped like mailbox_runs,
# dropped afterwards.
raw=()
pgbench=$( (newest_pg_bin 2>/dev/null || true) | sed 's|$|/pgbench|')
if [ -n "${DATABASE_URL:-}" ] && [ -x "$pgbench" ]; then
  psql=${pgbench%pgbench}psql
  "$psql" -q "$DATABASE_URL" -c "CREATE TABLE IF NOT EXISTS hubbub_raw_rows (user_id TEXT NOT NULL, \
    end_seq BIGINT NOT NULL, group_id TEXT NOT NULL, last_seq BIGINT NOT NULL, n BIGINT NOT NULL, \
    PRIMARY KEY (user_id, end_seq)); CREATE SEQUENCE IF NOT EXISTS hubbub_raw_seq"
  cat >"$tmp/raw.sql" <<'SQL'
INSERT INTO hubbub_raw_rows SELECT md5((b.n * 1000 + i)::text), b.n, 'g-raw', i, 1
  FROM (SELECT nextval('hubbub_raw_seq') AS n) b, generate_series(1, 1000) i;
SQL
  tps=$("$pgbench" -n -c 2 -j 2 -T 5 -f "$tmp/raw.sql" "$DATABASE_URL" 2>/dev/null |
    sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1)
  "$psql" -q "$DATABASE_URL" -c "DROP TABLE hubbub_raw_rows; DROP SEQUENCE hubbub_raw_seq"
  [ -n "$tps" ] && raw=(--raw-postgres-rows-per-s "$(awk -v t="$tps" 'BEGIN { printf "%.0f", t * 1000 }')")
fi

HUBBUB_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
HUBBUB_INTERNAL_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export HUBBUB_JWT_SECRET HUBBUB_INTERNAL_KEY
store=(--set "group.store.data_dir=$tmp" --set "gift.store.data_dir=$tmp")
[ -n "${DATABASE_URL:-}" ] && store+=(--set "group.store.database_url=$DATABASE_URL")
base=${GROUP_BENCH_PORT:-7900}
HUBBUB_TELEMETRY__LOG=warn "$bin/hubbub" all "${store[@]}" \
  --set "gateway.listen=127.0.0.1:$base" --set "gateway.internal_listen=127.0.0.1:$((base + 5))" \
  --set "gateway.advertise=http://127.0.0.1:$((base + 5))" \
  --set "room.listen=127.0.0.1:$((base + 1))" --set "room.advertise=http://127.0.0.1:$((base + 1))" \
  --set "gateway.room_instances=[\"http://127.0.0.1:$((base + 1))\"]" \
  --set "group.listen=127.0.0.1:$((base + 2))" --set "gateway.group_address=http://127.0.0.1:$((base + 2))" \
  --set "gift.listen=127.0.0.1:$((base + 3))" --set "gateway.gift_address=http://127.0.0.1:$((base + 3))" \
  --set "gift.room_instances=[\"http://127.0.0.1:$((base + 1))\"]" \
  --set "presence.listen=127.0.0.1:$((base + 4))" \
  --set "gateway.presence_address=http://127.0.0.1:$((base + 4))" \
  --set "group.presence_address=http://127.0.0.1:$((base + 4))" \
  --set gateway.presence_report_ms=100 \
  --set gateway.session_calls_per_sec=1e9 --set gateway.session_calls_burst=1e9 \
  --set gateway.group_calls_per_sec=1e9 --set gateway.group_calls_burst=1e9 >&2 &
pid=$!
sleep 2
kill -0 "$pid" 2>/dev/null || { echo "group.sh: hubbub all did not start (port in use?)" >&2; exit 1; }

"$bin/hubbub-bench" group --gateway "127.0.0.1:$base" "${raw[@]}" "$@"
