# Shared by scripts/test.sh and bench/*.sh: installing what is missing and
# starting a throwaway PostgreSQL on a free port. Source it; it defines
# functions only. `say` and `die` print with the sourcing script's name.

say() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { say "error: $*"; exit 1; }

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

newest_pg_bin() {
  find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1
}

# start_postgres DIR DATABASE [SERVER SETTINGS...]: initdb in DIR (which the
# caller removes), start on a free loopback port with the given `-c`
# settings, create DATABASE; sets pg_bin, pg_data, pg_port and DATABASE_URL.
# Stop it with stop_postgres.
start_postgres() {
  local dir=$1 db=$2
  shift 2
  pg_bin=$(newest_pg_bin)
  if [ -z "$pg_bin" ]; then apt_install postgresql; pg_bin=$(newest_pg_bin); fi
  [ -n "$pg_bin" ] || die "no /usr/lib/postgresql/*/bin after installing postgresql"

  pg_port=$(free_port)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  as_postgres "$pg_bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  pg_data=$dir/data
  local settings="-p $pg_port -k $dir -c listen_addresses=127.0.0.1"
  local s
  for s in "$@"; do settings+=" -c $s"; done
  as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -l "$dir/server.log" -w -o "$settings" start >/dev/null ||
    { cat "$dir/server.log" >&2; die "PostgreSQL did not start"; }
  retry 20 "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" || die "PostgreSQL is not ready"
  "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres "$db"
  export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/$db"
}

stop_postgres() {
  [ -n "${pg_data:-}" ] && as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null 2>&1
  pg_data=""
}
