#!/usr/bin/env bash
# Sending benchmark (issue 5): agents POST /v1/messages/ (5 KiB, DKIM-signed) to gunicorn, the
# delivery worker hands them to Postfix's smtp-sink on loopback; then, in the same run, a stock
# Postfix relays the same count from smtp-source to the same kind of sink. Both go through a relay
# host ([127.0.0.1]:sink), so both skip MX lookups and do the same SMTP hop.
#
# Usage: bench/send.sh     COUNT=10000 KB=5 CONNECTIONS=16 SESSIONS=20 (defaults)
# Reports, for Gentbox, the API accept rate and the end-to-end rate (first POST to the sink's
# last 250), the CPU per message of the web processes and of the worker, and the worker's RSS;
# for Postfix, the smtp-source accept rate and the end-to-end rate into the sink; and the ratio
# of the end-to-end rates.
# Needs: postfix (smtp-source, smtp-sink), wrk, root (the private Postfix's daemons).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-10000}; KB=${KB:-5}; CONNECTIONS=${CONNECTIONS:-16}; SESSIONS=${SESSIONS:-20}
for tool in /usr/sbin/smtp-source /usr/sbin/smtp-sink; do
  [ -x "$tool" ] || { echo "$tool is missing: run scripts/test-services.sh" >&2; exit 1; }; done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { date +%s.%N; }
tmp=$(mktemp -d /tmp/gentbox-bench-send.XXXXXX); chmod 755 "$tmp"
pids=(); pf_conf=""
cleanup() {
  [ -n "$pf_conf" ] && postfix -c "$pf_conf" stop >/dev/null 2>&1 || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && echo "kept $tmp" >&2 || rm -rf "$tmp"
}
trap cleanup EXIT

# sink NAME: start smtp-sink on a free port (its counter goes to $tmp/NAME.count); prints the port.
sink() {
  local port; port=$(free_port)
  /usr/sbin/smtp-sink -u root -c "127.0.0.1:$port" 256 > "$tmp/$1.count" 2>&1 &
  pids+=($!); echo "$port"
}
sunk() { tr '\r' '\n' < "$tmp/$1.count" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 | grep . || echo 0; }
wait_sunk() {  # wait_sunk NAME N: until the sink has N messages (or 10 minutes)
  for _ in $(seq 1 6000); do [ "$(sunk "$1")" -ge "$2" ] && return 0; sleep 0.1; done
  echo "timed out waiting for $2 messages in the $1 sink (got $(sunk "$1"))" >&2; return 1
}

# --- Gentbox: web (gunicorn) and the worker, relaying to a sink
g_sink=$(sink gentbox)
gdata="$tmp/gentbox"; mkdir -p "$gdata"
export GENTBOX_DATA_DIR="$gdata" GENTBOX_SECRET_KEY="$(python3 -c 'import secrets;print(secrets.token_urlsafe(48))')"
export GENTBOX_HTTP_PORT=$(free_port) GENTBOX_HOSTNAME=mail.gentbox.test GENTBOX_LOG_LEVEL=WARNING
export GENTBOX_RATE_LIMIT_TOKEN=100000000 GENTBOX_DNS_SERVERS=127.0.0.1:9
export GENTBOX_RELAY_HOST=127.0.0.1 GENTBOX_RELAY_PORT=$g_sink GENTBOX_RELAY_TLS=none
TOKEN=$(PYTHONPATH=. .venv/bin/python bench/setup_send.py)
.venv/bin/gentbox web > "$tmp/web.log" 2>&1 & web=$!; pids+=($web)
.venv/bin/gentbox worker > "$tmp/worker.log" 2>&1 & worker=$!; pids+=($worker)
# Up to 2 minutes: on a loaded machine gunicorn can take half a minute to listen (wrk must not start first).
for _ in $(seq 1 1200); do (exec 3<>/dev/tcp/127.0.0.1/$GENTBOX_HTTP_PORT) 2>/dev/null && break; sleep 0.1; done
echo "load before the run: $(uptime | sed 's/.*load average/load average/')"
# cpu PID...: CPU seconds (user + system) of these processes and all their descendants so far.
cpu() { python3 - "$@" <<'CPU'
import os, sys
kids, ticks = {}, {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    kids.setdefault(int(fields[1]), []).append(int(pid))
    ticks[int(pid)] = int(fields[11]) + int(fields[12])
todo, total = [int(p) for p in sys.argv[1:]], 0
while todo:
    pid = todo.pop()
    total += ticks.get(pid, 0)
    todo += kids.get(pid, [])
print(total / os.sysconf("SC_CLK_TCK"))
CPU
}
rss() { awk '/VmRSS|VmHWM/ {printf "%s %.1f MB  ", $1, $2/1024}' /proc/$worker/status; echo; }

echo "== Gentbox: $COUNT x ${KB} KiB through POST /v1/messages/ ($CONNECTIONS connections), worker -> smtp-sink"
echo "worker RSS idle: $(rss)"
threads=2
outbound() { .venv/bin/python -c 'import sqlite3,sys;print(sqlite3.connect(sys.argv[1]).execute("select count(*) from messages where direction=\"outbound\"").fetchone()[0])' "$gdata/gentbox.db"; }
web_cpu0=$(cpu $web); worker_cpu0=$(cpu $worker)
t0=$(now)
# wrk runs for its whole -d however early its threads stop: it is interrupted (it then prints its
# summary) once the API has accepted COUNT messages.
TOKEN=$TOKEN PER_THREAD=$((COUNT / threads)) KB=$KB wrk -t$threads -c"$CONNECTIONS" -d600s --timeout 30s \
  -s bench/send.lua "http://127.0.0.1:$GENTBOX_HTTP_PORT" > "$tmp/wrk.out" 2>&1 &
load=$!
.venv/bin/python - "$gdata/gentbox.db" "$COUNT" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
for _ in range(6000):  # one poller process, not one per check: it must not steal the CPU it measures
    if db.execute("select count(*) from messages where direction='outbound'").fetchone()[0] >= int(sys.argv[2]):
        break
    time.sleep(0.1)
PY
t_api=$(now)
kill -INT $load; wait $load || true
grep -E "non-201|latency p50" "$tmp/wrk.out" || cat "$tmp/wrk.out"
sleep 1; queued=$(outbound)  # requests in flight when wrk stopped finish on the server
wait_sunk gentbox $((queued + 1))  # + the bench owner's own sign-up email
t1=$(now)
web_cpu1=$(cpu $web); worker_cpu1=$(cpu $worker)
g_api=$(python3 -c "import sys;c,a,b=map(float,sys.argv[1:]);print(f'{c/(b-a):.1f}')" "$queued" "$t0" "$t_api")
g_e2e=$(python3 -c "import sys;c,a,b=map(float,sys.argv[1:]);print(f'{c/(b-a):.1f}')" "$queued" "$t0" "$t1")
echo "gentbox sink: $(tr '\r' '\n' < "$tmp/gentbox.count" | grep sess= | tail -1) (sess: SMTP connections the worker opened)"
echo "gentbox: $queued accepted by the API at $g_api msg/s; $(sunk gentbox) in the sink (the $queued and one sign-up email) after $(python3 -c "print(f'{$t1-$t0:.1f}')") s = $g_e2e msg/s end to end"
echo "worker RSS after: $(rss)"
python3 -c "import sys;n,a,b,c,d=map(float,sys.argv[1:]);print(f'CPU per message: web {(b-a)/n*1000:.1f} ms, worker {(d-c)/n*1000:.1f} ms')" \
  "$queued" "$web_cpu0" "$web_cpu1" "$worker_cpu0" "$worker_cpu1"
echo "outbound messages in the store at the end: $(outbound) (sink: $(sunk gentbox), including the sign-up email)"

# --- Postfix: a private instance relaying everything to its own sink
p_sink=$(sink postfix)
pf="$tmp/postfix"; pf_conf="$pf/etc"; mkdir -p "$pf_conf" "$pf/spool" "$pf/lib"
chown postfix:postfix "$pf/lib"
pf_port=$(free_port)
cat > "$pf_conf/main.cf" <<CONF
compatibility_level = 3.6
config_directory = $pf_conf
queue_directory = $pf/spool
data_directory = $pf/lib
meta_directory = /etc/postfix
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = $pf/maillog
maillog_file_prefixes = $pf
myhostname = bench.postfix.test
mydestination =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
relayhost = [127.0.0.1]:$p_sink
smtp_tls_security_level = none
CONF
sed -e "s/^smtp      inet.*/127.0.0.1:$pf_port inet n - n - - smtpd/" \
    -e 's/^\([a-z]\+ \+\(unix\|inet\|unix-dgram\|fifo\|pass\) \+[-yn] \+[-yn] \+\)y /\1n /' \
    /etc/postfix/master.cf | grep -v '^ *-o' | awk '/^(#|$|  )/ {next} {print}' > "$pf_conf/master.cf"
postfix -c "$pf_conf" check
postfix -c "$pf_conf" start >/dev/null
for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$pf_port) 2>/dev/null && break; sleep 0.1; done

echo "== Postfix: $COUNT x ${KB} KiB from smtp-source ($SESSIONS sessions), relayed to smtp-sink"
t0=$(now)
/usr/sbin/smtp-source -d -s "$SESSIONS" -m "$COUNT" -l $((KB * 1024)) -M client.bench.test \
  -f bench@bench.example -t bench@sink.example "127.0.0.1:$pf_port"
t_acc=$(now)
wait_sunk postfix "$COUNT"
t1=$(now)
p_acc=$(python3 -c "import sys;c,a,b=map(float,sys.argv[1:]);print(f'{c/(b-a):.1f}')" "$COUNT" "$t0" "$t_acc")
p_e2e=$(python3 -c "import sys;c,a,b=map(float,sys.argv[1:]);print(f'{c/(b-a):.1f}')" "$COUNT" "$t0" "$t1")
echo "postfix: $COUNT accepted at $p_acc msg/s; all $(sunk postfix) in the sink = $p_e2e msg/s end to end"
echo "== summary: gentbox $g_e2e msg/s end to end (API accept $g_api), postfix $p_e2e msg/s (accept $p_acc);" \
  "ratio $(python3 -c "print(f'{$g_e2e/$p_e2e:.2f}')")"
echo "load after the run: $(uptime | sed 's/.*load average/load average/')"
