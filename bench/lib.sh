# shellcheck shell=bash
# What the benchmarks that start `hubbub all` share: release binaries, a
# temporary directory removed at exit with everything started in it, and a
# PostgreSQL with production-like settings unless DATABASE_URL is set.
#
#   . bench/lib.sh; bench_start "what it is for"   # sets bin, tmp, pid=""

# shellcheck source=scripts/lib/throwaway.sh
. scripts/lib/throwaway.sh

bench_cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null
  wait 2>/dev/null || true
  stop_postgres
  rm -rf "$tmp"
}

# bench_start WHAT: builds, makes $tmp, and starts the throwaway PostgreSQL
# (full durability: fsync and synchronous commit on; 2 GB shared buffers,
# large WAL, lz4 WAL compression) unless DATABASE_URL is set or
# BENCH_NO_POSTGRES is.
bench_start() {
  cargo build --release --quiet -p hubbub -p hubbub-bench
  bin=${CARGO_TARGET_DIR:-target}/release
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # the postgres user must reach its own directory inside
  pid=""
  pg_data=""
  trap bench_cleanup EXIT
  if [ -z "${DATABASE_URL:-}" ] && [ -z "${BENCH_NO_POSTGRES:-}" ]; then
    start_postgres "$tmp/pg" hubbub_bench shared_buffers=2GB max_wal_size=8GB checkpoint_timeout=30min \
      wal_compression=lz4
    say "$1: throwaway PostgreSQL on 127.0.0.1:$pg_port"
  fi
}

# bench_hubbub_all BASE [--set key=value ...]: `hubbub all` on loopback
# ports BASE (public) to BASE+5 with fresh secrets (exported), every role
# wired to the others, SQLite in $tmp, the per-user call limits lifted (a
# load generator is a few users calling fast), plus the given settings;
# sets pid.
bench_hubbub_all() {
  local base=$1
  shift
  HUBBUB_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  HUBBUB_INTERNAL_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  export HUBBUB_JWT_SECRET HUBBUB_INTERNAL_KEY
  local at="http://127.0.0.1"
  HUBBUB_TELEMETRY__LOG=warn "$bin/hubbub" all \
    --set "group.store.data_dir=$tmp" --set "gift.store.data_dir=$tmp" \
    --set "gateway.listen=127.0.0.1:$base" --set "gateway.internal_listen=127.0.0.1:$((base + 5))" \
    --set "gateway.advertise=$at:$((base + 5))" \
    --set "room.listen=127.0.0.1:$((base + 1))" --set "room.advertise=$at:$((base + 1))" \
    --set "gateway.room_instances=[\"$at:$((base + 1))\"]" \
    --set "group.listen=127.0.0.1:$((base + 2))" --set "gateway.group_address=$at:$((base + 2))" \
    --set "gift.listen=127.0.0.1:$((base + 3))" --set "gateway.gift_address=$at:$((base + 3))" \
    --set "gift.room_instances=[\"$at:$((base + 1))\"]" \
    --set "presence.listen=127.0.0.1:$((base + 4))" --set "gateway.presence_address=$at:$((base + 4))" \
    --set "group.presence_address=$at:$((base + 4))" --set "gift.presence_address=$at:$((base + 4))" \
    --set gateway.presence_report_ms=100 \
    --set gateway.session_calls_per_sec=1e9 --set gateway.session_calls_burst=1e9 \
    --set gateway.group_calls_per_sec=1e9 --set gateway.group_calls_burst=1e9 \
    --set gateway.gift_calls_per_sec=1e9 --set gateway.gift_calls_burst=1e9 \
    "$@" >&2 &
  pid=$!
  sleep 2
  kill -0 "$pid" 2>/dev/null || die "hubbub all did not start (port in use?)"
}
