#!/usr/bin/env bash
# SMTP benchmark (issue 4): Postfix's smtp-source against the Gentbox listener (`gentbox smtp`,
# SQLite in a fresh temp data dir, durable commits: synchronous=FULL, 250 only after the commit),
# then the same load against a stock Postfix instance on this machine that delivers to a virtual
# mailbox (a Maildir under the temp dir). Both run on loopback, one after the other.
#
# Usage: bench/smtp.sh
#   SESSIONS=20 SMALL_COUNT=20000 SMALL_KB=5 LARGE_COUNT=2000 LARGE_KB=100 (defaults; override
#   for smaller runs; a count of 0 skips that phase). smtp-source runs with -d (several messages
#   per connection), for both.
#   GENTBOX_SMTP_PROCESSES=N runs the listener in N processes (default: the setting's default).
#   PROFILE=FILE samples the listener with py-spy during the first phase (collapsed stacks;
#   PROFILE_ARGS="--gil --nonblocking" for where the GIL is held); `pip install py-spy` first.
#   GENTBOX_ONLY=1 skips the Postfix runs (for comparing two versions of Gentbox).
#   WHOLE=1 measures the appliance as it really runs (issue 26 point 2): `gentbox run` (web, worker,
#   IMAP and MCP beside the listener, all on free ports) instead of `gentbox smtp` alone, and half
#   the sessions from a sender domain with SPF and DMARC records, half from one that does not
#   exist (dnsmasq answers NXDOMAIN with the zone's SOA, as a real authoritative server does). The
#   CPU and RSS figures then cover every process of the appliance.
#   It also prints the CPU per message of each process, and waits after each phase until every
#   event reader of the worker (enrichment, activity...) has passed its last event (how long, CPU by then).
# Reports messages/s for each phase and target, the ratio Gentbox/Postfix, the listener's RSS, and
# the CPU time the listener's processes spent per message. Each timed run starts after `sync`, so
# the page cache that an earlier run left dirty is not written out on the next run's time.
#
# Needs: postfix (smtp-source, run unconfigured: scripts/test-services.sh installs it), dnsmasq
# (a loopback DNS server answering the listener's SPF/DKIM/DMARC lookups for the sender domain),
# and root (the private Postfix's daemons run as the `postfix` user). The system's Postfix (if any)
# is not touched: the private instance has its own config, queue and data directories.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-20}
SMALL_COUNT=${SMALL_COUNT:-20000}; SMALL_KB=${SMALL_KB:-5}
LARGE_COUNT=${LARGE_COUNT:-2000}; LARGE_KB=${LARGE_KB:-100}
[ -x /usr/sbin/smtp-source ] || { echo "smtp-source is missing: run scripts/test-services.sh" >&2; exit 1; }
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
[ -x "$DNSMASQ" ] || { echo "dnsmasq is missing: apt-get install dnsmasq-base" >&2; exit 1; }

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
tmp=$(mktemp -d /tmp/gentbox-bench-smtp.XXXXXX); chmod 755 "$tmp"
pids=()
pf_conf=""
cleanup() {
  [ -n "$pf_conf" ] && postfix -c "$pf_conf" stop >/dev/null 2>&1 || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && echo "kept $tmp" >&2 || rm -rf "$tmp"
}
trap cleanup EXIT

# --- loopback DNS: SPF for the sender domain passes from 127.0.0.1; nothing else exists. dnsmasq
# answers as the zones' authoritative server, as a real zone's would: records with a TTL of 300 s,
# NXDOMAIN and no-data answers with the zone's SOA (whose negative TTL is the same).
dns_port=$(free_port)
"$DNSMASQ" --keep-in-foreground --no-resolv --no-hosts --bind-interfaces --listen-address=127.0.0.1 \
  --port="$dns_port" --auth-server=ns.example,lo --auth-zone=example --auth-zone=test --auth-ttl=300 \
  --log-facility=/dev/null --pid-file= \
  --txt-record=sender.example,"v=spf1 ip4:127.0.0.0/8 -all" \
  --txt-record=_dmarc.sender.example,"v=DMARC1; p=none" &
pids+=($!)

# --- Gentbox listener
gdata="$tmp/gentbox"; mkdir -p "$gdata"
export GENTBOX_DATA_DIR="$gdata" GENTBOX_SECRET_KEY="$(python3 -c 'import secrets;print(secrets.token_urlsafe(48))')"
export GENTBOX_SMTP_PORT=$(free_port) GENTBOX_HOSTNAME=mail.gentbox.test GENTBOX_LOG_LEVEL=WARNING
export GENTBOX_SMTP_MAX_CONNECTIONS_PER_IP=1000 GENTBOX_SMTP_CONNECTION_RATE_PER_IP=100000000
export GENTBOX_DNS_SERVERS="127.0.0.1:$dns_port" GENTBOX_DNS_TIMEOUT=2
PYTHONPATH=. .venv/bin/python bench/setup_bench.py >/dev/null   # owner, verified domain, bench@bench.example.com
if [ -n "${WHOLE:-}" ]; then
  for name in HTTP IMAP IMAPS MCP SUBMISSION SUBMISSIONS; do export "GENTBOX_${name}_PORT=$(free_port)"; done
  .venv/bin/gentbox run > "$tmp/gentbox-smtp.log" 2>&1 &
else
  .venv/bin/gentbox smtp > "$tmp/gentbox-smtp.log" 2>&1 &
fi
listener=$!; pids+=($listener)
for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$GENTBOX_SMTP_PORT) 2>/dev/null && break; sleep 0.1; done

# --- stock Postfix, private instance, virtual mailbox delivery into a Maildir
pf="$tmp/postfix"; pf_conf="$pf/etc"; mkdir -p "$pf_conf" "$pf/spool" "$pf/lib" "$pf/vmail"
chown postfix:postfix "$pf/lib" "$pf/vmail"
pf_port=$(free_port)
echo "bench@pf.example pf.example/bench/" > "$pf_conf/vmailbox"
cat > "$pf_conf/main.cf" <<EOF
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
virtual_mailbox_domains = pf.example
virtual_mailbox_maps = texthash:$pf_conf/vmailbox
virtual_mailbox_base = $pf/vmail
virtual_uid_maps = static:$(id -u postfix)
virtual_gid_maps = static:$(id -g postfix)
EOF
sed -e "s/^smtp      inet.*/127.0.0.1:$pf_port inet n - n - - smtpd/" \
    -e 's/^\([a-z]\+ \+\(unix\|inet\|unix-dgram\|fifo\|pass\) \+[-yn] \+[-yn] \+\)y /\1n /' \
    /etc/postfix/master.cf | grep -v '^ *-o' | awk '/^(#|$|  )/ {next} {print}' > "$pf_conf/master.cf"
grep -q "^127.0.0.1:$pf_port inet" "$pf_conf/master.cf" || { echo "could not write master.cf" >&2; exit 1; }
postfix -c "$pf_conf" check
postfix -c "$pf_conf" start >/dev/null
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$pf_port) 2>/dev/null && break; sleep 0.1; done

# The listener's processes (its one process, or the parent and each child), or with WHOLE=1 the
# whole process tree of `gentbox run`.
tree() {
  local pid=$1; echo "$pid"
  for child in $(pgrep -P "$pid" || true); do tree "$child"; done
}
# RSS of the listener: its one process, or with GENTBOX_SMTP_PROCESSES > 1 the parent and each child.
rss() {
  for pid in $(tree "$listener"); do
    awk -v pid="$pid" '/VmRSS|VmHWM/ {printf "%s %.1f MB ", $1, $2/1024} END {printf "(pid %s)  ", pid}' /proc/$pid/status
  done; echo
}
stored() { .venv/bin/python -c 'import sqlite3,sys;print(sqlite3.connect(sys.argv[1]).execute("select count(*) from messages").fetchone()[0])' "$gdata/gentbox.db"; }
sqlite3_q() { .venv/bin/python -c 'import sqlite3,sys;print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$gdata/gentbox.db" "$1"; }
delivered() { { find "$pf/vmail/pf.example/bench/new" -type f 2>/dev/null || true; } | wc -l; }
now() { date +%s.%N; }
# With WHOLE=1: "pid:user:sys" (CPU ticks) of every process of the tree, for the per-process split.
cpu_split() { for pid in $(tree "$listener"); do awk -v pid="$pid" '{print pid ":" $14 ":" $15}' /proc/$pid/stat; done; }
# Print where the CPU went between two cpu_split snapshots, per process (ms per message, user+sys):
# the supervisor's children in the order it forks them (web, smtp, worker, imap) and theirs.
cpu_report() {
  python3 - "$1" "$2" "$3" "$listener" "$(getconf CLK_TCK)" <<'PY'
import os, sys
a, b, n, root, hz = sys.argv[1].split(), sys.argv[2].split(), float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
before = {p: (int(u), int(s)) for p, u, s in (x.split(":") for x in a)}
names, parent = {root: "run"}, {}
for pid in sorted((x.split(":")[0] for x in b), key=int):
    try:
        parent[pid] = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
    except OSError:
        parent[pid] = "?"
kids = sorted((p for p in parent if parent[p] == root), key=int)
for role, pid in zip(("web", "smtp", "worker", "imap", "mcp"), kids):
    names[pid] = role
out = []
for x in b:
    pid, u, s = x.split(":")
    u0, s0 = before.get(pid, (0, 0))
    name = names.get(pid) or names.get(parent.get(pid), "?") + "-child"
    out.append(f"{name}({pid}) {(int(u) - u0) / hz / n * 1000:.2f}+{(int(s) - s0) / hz / n * 1000:.2f}")
print("   CPU ms/msg user+sys by process: " + ", ".join(out))
PY
}

# CPU seconds (user + system) of the listener's processes so far.
listener_cpu() {
  for pid in $(tree "$listener"); do awk '{print $14 + $15}' /proc/$pid/stat; done \
    | awk -v hz="$(getconf CLK_TCK)" '{t += $1} END {printf "%.2f", t / hz}'
}

# run TARGET PORT RCPT COUNT KB: smtp-source, time to the last 250; prints msgs/s.
run() {
  local name=$1 port=$2 rcpt=$3 count=$4 kb=$5 t0 t1
  sync
  t0=$(now)
  if [ -n "${WHOLE:-}" ]; then  # half the load from a sender domain that does not exist
    /usr/sbin/smtp-source -d -s $((SESSIONS / 2)) -m $((count / 2)) -l $((kb * 1024)) -M client.bench.test \
      -f bench-sender@sender.example -t "$rcpt" "127.0.0.1:$port" &
    /usr/sbin/smtp-source -d -s $((SESSIONS - SESSIONS / 2)) -m $((count - count / 2)) -l $((kb * 1024)) \
      -M client.bench.test -f someone@nowhere.test -t "$rcpt" "127.0.0.1:$port"
    wait $!
  else
    /usr/sbin/smtp-source -d -s "$SESSIONS" -m "$count" -l $((kb * 1024)) -M client.bench.test \
      -f bench-sender@sender.example -t "$rcpt" "127.0.0.1:$port"
  fi
  t1=$(now)
  python3 -c "import sys;c,a,b=map(float,sys.argv[1:]);print(f'{c/(b-a):.1f} {b-a:.1f}')" "$count" "$t0" "$t1"
}

results=()
total_pf=0
# PROFILE=FILE: sample the listener with py-spy (collapsed stacks in FILE) during the first phase.
profiler=""
if [ -n "${PROFILE:-}" ]; then
  .venv/bin/py-spy record --pid "$listener" --subprocesses --rate 200 --format raw -o "$PROFILE" ${PROFILE_ARGS:-} >/dev/null 2>&1 &
  profiler=$!
fi
echo "== load: $SESSIONS sessions; $SMALL_COUNT x ${SMALL_KB} KiB, then $LARGE_COUNT x ${LARGE_KB} KiB;" \
  "listener processes: ${GENTBOX_SMTP_PROCESSES:-default}; ${WHOLE:+the whole appliance (gentbox run), mixed senders}"
echo "== listener RSS idle: $(rss)"
for phase in "small $SMALL_COUNT $SMALL_KB" "large $LARGE_COUNT $LARGE_KB"; do
  set -- $phase; label=$1; count=$2; kb=$3
  [ "$count" -gt 0 ] || continue   # SMALL_COUNT=0 or LARGE_COUNT=0 skips that phase
  cpu0=$(listener_cpu); split0=$(cpu_split)
  read -r g_rate g_secs < <(run gentbox "$GENTBOX_SMTP_PORT" bench@bench.example.com "$count" "$kb")
  cpu=$(python3 -c "import sys;a,b,n=map(float,sys.argv[1:]);print(f'{(b-a)/n*1000:.2f}')" "$cpu0" "$(listener_cpu)" "$count")
  echo "gentbox  $label: $count msgs in ${g_secs}s = $g_rate msg/s (stored so far: $(stored)); listener CPU ${cpu} ms/msg; $(rss)"
  if [ -n "${WHOLE:-}" ]; then
    cpu_report "$split0" "$(cpu_split)" "$count"
    # The worker's event readers (enrichment, activity, sequences...) run after the 250: wait
    # until every cursor has passed the last event of the phase, then count the CPU again.
    target=$(sqlite3_q "select coalesce(max(seq), 0) from events")
    t0=$(now)
    for _ in $(seq 1 3000); do
      [ "$(sqlite3_q "select coalesce(min(last_seq), 0) from alert_cursors")" -ge "$target" ] && break; sleep 0.1
    done
    echo "   every event reader past the phase's last event $(python3 -c "import sys;print(f'{float(sys.argv[2])-float(sys.argv[1]):.1f}')" "$t0" "$(now)") s after the last 250;" \
      "CPU then $(python3 -c "import sys;a,b,n=map(float,sys.argv[1:]);print(f'{(b-a)/n*1000:.2f}')" "$cpu0" "$(listener_cpu)" "$count") ms/msg in all"
    cpu_report "$split0" "$(cpu_split)" "$count"
  fi
  if [ -n "$profiler" ]; then kill -INT "$profiler"; wait "$profiler" || true; profiler=""; fi
  if [ -n "${GENTBOX_ONLY:-}" ]; then results+=("$label (${kb} KiB): gentbox $g_rate msg/s"); continue; fi
  sync; before=$(delivered); t0=$(now)
  read -r p_rate p_secs < <(run postfix "$pf_port" bench@pf.example "$count" "$kb")
  total_pf=$((total_pf + count))
  for _ in $(seq 1 3000); do [ "$(delivered)" -ge "$total_pf" ] && break; sleep 0.1; done
  t1=$(now); got=$(( $(delivered) - before ))
  p_e2e=$(python3 -c "import sys;c,a,b=map(float,sys.argv[1:]);print(f'{c/(b-a):.1f}')" "$got" "$t0" "$t1")
  echo "postfix  $label: $count msgs accepted in ${p_secs}s = $p_rate msg/s; $got delivered to the Maildir = $p_e2e msg/s end to end"
  ratio=$(python3 -c "import sys;g,p,e=map(float,sys.argv[1:]);print(f'{g/p:.2f} of accept rate, {g/e:.2f} of end-to-end rate')" "$g_rate" "$p_rate" "$p_e2e")
  results+=("$label (${kb} KiB): gentbox $g_rate msg/s, postfix $p_rate msg/s accepted / $p_e2e msg/s delivered; ratio $ratio")
done
[ -n "${GENTBOX_ONLY:-}" ] && { printf '%s\n' "${results[@]}"; exit 0; }
echo "== summary"
printf '%s\n' "${results[@]}"
echo "gentbox stored $(stored) of $((SMALL_COUNT + LARGE_COUNT)); postfix delivered $(delivered) of $total_pf"
echo "listener after the runs: $(rss)"
