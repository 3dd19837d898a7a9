#!/usr/bin/env bash
# The project's test command.
#
#   scripts/test.sh [ARGS...]     ARGS go to the test runner
#
# 1. Lints the protobuf contracts and generates the JS code of the gRPC-web
#    probes (web-tests/); builds and tests the TypeScript client (clients/ts/).
# 2. Starts a throwaway PostgreSQL and Redis on free local ports, unless
#    DATABASE_URL / REDIS_URL are already set, and exports their URLs. They
#    are stopped and their files removed when the script exits, however it exits.
# 3. Runs every Rust test: `cargo nextest run` when cargo-nextest is
#    installed, else `cargo test`. HUBBUB_TEST_RUNNER replaces the runner
#    command (e.g. HUBBUB_TEST_RUNNER=env to see the environment the tests get).
# 4. Tests the Helm chart (helm/test/run.sh), unless only some Rust tests
#    were asked for.
#
# Missing system packages (PostgreSQL, Redis, Node, Chromium) are installed with apt-get,
# which needs root. Exits with the test runner's status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# ---- helpers ----------------------------------------------------------------

# shellcheck source=scripts/lib/throwaway.sh
. scripts/lib/throwaway.sh

# ---- cleanup, whatever happens ------------------------------------------------

tmp=""
pg_bin=""
pg_data=""
redis_port=""

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local status=$?
  set +e
  stop_postgres
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
# The TypeScript client's logic (backoff, watchdog, sequences, errors).
(
  cd clients/ts
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  npm run --silent generate || die "buf generate failed for the TypeScript client"
  npm run --silent build || die "the TypeScript client does not compile"
  npm test >/dev/null 2>&1 || { npm test; die "the TypeScript client's tests failed"; }
  npm run --silent demo:check || die "the demo page's bundles are stale"
)
# The demo page's tests drive a real browser (hubbub/tests/browser.rs).
if [ -z "${HUBBUB_CHROMIUM:-}" ]; then
  command -v chromium >/dev/null || apt_install chromium
  export HUBBUB_CHROMIUM
  HUBBUB_CHROMIUM=$(command -v chromium)
fi

# ---- 2. throwaway PostgreSQL and Redis ---------------------------------------

started=""  # what this script started, for the one-line note

start_test_postgres() {
  # fsync off: a throwaway database for tests, not for figures.
  start_postgres "$tmp/pg" hubbub_test fsync=off
  started+="PostgreSQL $(basename "$(dirname "$pg_bin")") on 127.0.0.1:$pg_port, "
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
[ -n "${DATABASE_URL:-}" ] || start_test_postgres
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

# ---- 4. the Helm chart --------------------------------------------------------

# Rendered, validated and checked against the binary's --check-config; not
# when only some Rust tests were asked for.
if [ -z "${HUBBUB_TEST_RUNNER:-}" ] && [ $# -eq 0 ]; then
  helm/test/run.sh || status=$?
fi
exit "$status"
