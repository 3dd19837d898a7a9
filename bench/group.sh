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

# shellcheck source=bench/lib.sh
. bench/lib.sh
[ "${GROUP_BENCH_STORE:-postgres}" = sqlite ] && BENCH_NO_POSTGRES=1
bench_start "group store"

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

store=()
[ -n "${DATABASE_URL:-}" ] && store+=(--set "group.store.database_url=$DATABASE_URL")
base=${GROUP_BENCH_PORT:-7900}
bench_hubbub_all "$base" "${store[@]}"

"$bin/hubbub-bench" group --gateway "127.0.0.1:$base" "${raw[@]}" "$@"
