#!/usr/bin/env bash
# Runs the gift scenario on this machine: `hubbub all` on loopback ports
# with the gift ledger on PostgreSQL, then hubbub-bench gift against its
# public port (one hot room, its streamer and viewers, senders at a rate);
# prints the bench's JSON line and stops everything it started.
#
# The ledger: DATABASE_URL when set; else a throwaway PostgreSQL started
# here with production-like settings (full durability).
#
#   bench/gift.sh [hubbub-bench gift options]
#   bench/gift.sh --viewers 1000 --senders 100 --rate 2000 --duration 10
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_start "gift ledger"

base=${GIFT_BENCH_PORT:-7920}
# The viewers are guests from a few loopback addresses: the per-address caps
# on guest streams and connections are lifted for them.
bench_hubbub_all "$base" --set "gift.store.database_url=${DATABASE_URL:?the gift bench needs PostgreSQL}" \
  --set gateway.max_guest_streams_per_address=1000000 --set listener.max_connections_per_address=1000000

HUBBUB_BENCH_GIFT_ADMIN=$("$bin/hubbub" token --service bench --scope gift.manage --ttl 2h)
export HUBBUB_BENCH_GIFT_ADMIN
"$bin/hubbub-bench" gift --gateway "127.0.0.1:$base" --gift "127.0.0.1:$((base + 3))" "$@"
