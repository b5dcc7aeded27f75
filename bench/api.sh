#!/usr/bin/env bash
# API benchmark (issue 2): gunicorn on this machine, wrk from another process, 50 connections.
# Usage: bench/api.sh [DB_URL]   (default: SQLite in a fresh temp dir)
# Reports requests/s and latency for GET /v1/users/me/ (agent token), GET /v1/messages/ (the first
# page of an inbox seeded with BENCH_MESSAGES=1000 received messages) and POST /v1/waitlist/, and the
# RSS of each web process idle and after the runs. ONLY=users_me|messages runs just that one.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
DURATION=${DURATION:-15s}
CONNS=${CONNS:-50}
tmp=$(mktemp -d)
export GENTBOX_DATA_DIR="$tmp" GENTBOX_SECRET_KEY="$(python3 -c 'import secrets;print(secrets.token_urlsafe(48))')"
export GENTBOX_HTTP_PORT=${PORT:-18080} GENTBOX_RATE_LIMIT_TOKEN=100000000 GENTBOX_RATE_LIMIT_IP=100000000
export GENTBOX_RATE_LIMIT_WAITLIST=100000000 GENTBOX_WEB_WORKERS=${WORKERS:-2}
[ -n "${1:-}" ] && export GENTBOX_DATABASE_URL="$1"
token=$(PYTHONPATH=. .venv/bin/python bench/setup_bench.py)
.venv/bin/gentbox web > "$tmp/web.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$GENTBOX_HTTP_PORT/v1/openapi.json" && break; sleep 0.2; done
rss() { for pid in $server $(pgrep -P "$server"); do
          printf '  pid %s (%s): RSS %s MB, PSS %s MB\n' "$pid" "$([ "$pid" = "$server" ] && echo master || echo worker)" \
            "$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$pid/status)" \
            "$(awk '/^Pss:/ {printf "%.1f", $2/1024}' /proc/$pid/smaps_rollup)"; done; }
sleep 2; echo "== RSS idle"; rss
url="http://127.0.0.1:$GENTBOX_HTTP_PORT"
get() {  # one warm-up call (its answer must be a 200), then wrk
  curl -sf -H "Authorization: Bearer $token" "$url$1" >/dev/null
  echo "== GET $1 (agent token), $CONNS connections, $DURATION"
  wrk -t2 -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $token" "$url$1"
}
case "${ONLY:-all}" in all|users_me) get /v1/users/me/ ;; esac
case "${ONLY:-all}" in all|messages) get /v1/messages/ ;; esac
case "${ONLY:-all}" in all|waitlist)
  echo "== POST /v1/waitlist/, $CONNS connections, $DURATION"
  wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s bench/waitlist.lua "$url" ;;
esac
echo "== RSS after"; rss
