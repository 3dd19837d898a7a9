#!/usr/bin/env bash
# The project's test command.
#
#   scripts/test.sh [ARGS...]     ARGS go to the test runner
#
# 1. Lints the protobuf contracts and generates the JS code of the gRPC-web
#    probes (web-tests/).
# 2. Starts a throwaway PostgreSQL and Redis on free local ports, unless
#    DATABASE_URL / REDIS_URL are already set, and exports their URLs. They
#    are stopped and their files removed when the script exits, however it exits.
# 3. Runs every Rust test: `cargo nextest run` when cargo-nextest is
#    installed, else `cargo test`. HUBBUB_TEST_RUNNER replaces the runner
#    command (e.g. HUBBUB_TEST_RUNNER=env to see the environment the tests get).
#
# Missing system packages (PostgreSQL, Redis, Node) are installed with apt-get,
# which needs root. Exits with the test runner's status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'test.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ---- helpers ----------------------------------------------------------------

apt_updated=false
apt_install() {
  [ "$(id -u)" = 0 ] || die "missing $*; install it or run as root"
  say "installing $*"
  if ! $apt_updated; then apt-get update -qq; apt_updated=true; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# A TCP port nobody listens on (never 5432/6379: those are the machine's own).
free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    return
  fi
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    # A refused connection means the port is free.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
}

# PostgreSQL refuses to run as root: as root, run its tools as `postgres`.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Runs CMD... until it succeeds, at most N times, half a second apart.
retry() {
  local n=$1; shift
  for _ in $(seq "$n"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  return 1
}

# ---- cleanup, whatever happens ------------------------------------------------

tmp=""
pg_bin=""
pg_data=""
redis_port=""

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local status=$?
  set +e
  if [ -n "$pg_data" ]; then
    as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null 2>&1
  fi
  if [ -n "$redis_port" ]; then
    redis-cli -h 127.0.0.1 -p "$redis_port" shutdown nosave >/dev/null 2>&1 ||
      { [ -f "$tmp/redis/redis.pid" ] && kill "$(cat "$tmp/redis/redis.pid")"; }
  fi
  [ -n "$tmp" ] && rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. protobuf lint and the web probes' generated code ---------------------

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
(
  cd web-tests
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  npm run --silent lint || die "buf lint found the problems above in proto/"
  npm run --silent generate || die "buf generate failed"
)

# ---- 2. throwaway PostgreSQL and Redis ---------------------------------------

started=""  # what this script started, for the one-line note

newest_pg_bin() {
  find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1
}

start_postgres() {
  pg_bin=$(newest_pg_bin)
  if [ -z "$pg_bin" ]; then apt_install postgresql; pg_bin=$(newest_pg_bin); fi
  [ -n "$pg_bin" ] || die "no /usr/lib/postgresql/*/bin after installing postgresql"

  local port dir=$tmp/pg
  port=$(free_port)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  as_postgres "$pg_bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  pg_data=$dir/data
  as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
    { cat "$dir/server.log" >&2; die "PostgreSQL did not start"; }
  retry 20 "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" || die "PostgreSQL is not ready"
  "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres hubbub_test

  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/hubbub_test"
  started+="PostgreSQL $(basename "$(dirname "$pg_bin")") on 127.0.0.1:$port, "
}

start_redis() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_install redis-server
  fi

  local port dir=$tmp/redis
  port=$(free_port)
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --dir "$dir" --logfile "$dir/redis.log"
  redis_port=$port
  retry 20 bash -c "redis-cli -h 127.0.0.1 -p $port ping | grep -q PONG" ||
    { cat "$dir/redis.log" >&2; die "Redis is not ready"; }

  export REDIS_URL="redis://127.0.0.1:$port/"
  started+="Redis on 127.0.0.1:$port, "
}

if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then
  tmp=$(mktemp -d /tmp/hubbub-test.XXXXXX)
  chmod 755 "$tmp" # the postgres user must reach its own directory inside
fi
[ -n "${DATABASE_URL:-}" ] || start_postgres
[ -n "${REDIS_URL:-}" ] || start_redis

if [ -n "$started" ]; then
  say "started ${started%, } (stopped on exit)"
else
  say "using the given DATABASE_URL and REDIS_URL"
fi

# ---- 3. the Rust tests ---------------------------------------------------------

if [ -n "${HUBBUB_TEST_RUNNER:-}" ]; then
  read -r -a runner <<<"$HUBBUB_TEST_RUNNER"
elif cargo nextest --version >/dev/null 2>&1; then
  runner=(cargo nextest run --workspace --no-fail-fast)
else
  runner=(cargo test --workspace)
fi

status=0
"${runner[@]}" "$@" || status=$?
exit "$status"
