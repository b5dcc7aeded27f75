#!/usr/bin/env bash
# Install (when missing) and start what the test suite talks to: a real PostgreSQL server,
# dnsmasq (started per test by the fixtures as a real DNS server on loopback), swaks (an SMTP
# client the listener tests run), Postfix (relay, smtp-source, smtp-sink), Mail::DKIM and
# systemd-analyze.
# Prints `export GENTBOX_TEST_POSTGRES_URL=...` for the caller to eval. Idempotent.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v swaks >/dev/null 2>&1 || need+=(swaks)
perl -MNet::SSLeay -e1 >/dev/null 2>&1 || need+=(libnet-ssleay-perl)  # swaks --tls
# A real Postfix relays into the listener (private instances started by the tests; installed
# unconfigured, so no system instance is set up) and its smtp-source drives bench/smtp.sh.
# Its smtp-sink is the remote MX of the delivery tests and benchmark.
[ -x /usr/sbin/postfix ] && [ -x /usr/sbin/smtp-source ] && [ -x /usr/sbin/smtp-sink ] || need+=(postfix)
# Mail::DKIM checks what the worker signs, independently of the dkimpy it signs with.
perl -MMail::DKIM::Verifier -MNet::DNS::Resolver -e1 >/dev/null 2>&1 || need+=(libmail-dkim-perl)
# systemd-analyze verifies the units in systemd/ and scores their sandboxing, offline (systemd
# need not be PID 1); the package also brings the stock units (sysinit.target...) it checks against.
command -v systemd-analyze >/dev/null 2>&1 && [ -e /lib/systemd/system/sysinit.target ] || need+=(systemd)
# Debian's chromium, driven by Playwright in tests/browser/ (Playwright's own browser builds are never downloaded).
[ -x /usr/bin/chromium ] || need+=(chromium)
# nft loads the Ansible role's firewall rules in a private network namespace (tests/integration/test_firewall_table.py).
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
# nginx serves the Ansible role's site in tests/integration/test_nginx_signup_log.py (its own config, never the system's).
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v mbsync >/dev/null 2>&1 || need+=(isync)  # a strict real IMAP client (tests/integration/test_imap_mbsync.py)
# debootstrap builds the fresh Debian root that tests/integration/test_ansible.py applies the playbook to.
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test services: ${need[*]}" >&2
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$ver main"; then
  $SUDO pg_createcluster "$ver" main >&2
fi
if ! pg_lsclusters -h | awk '$1=="'"$ver"'" && $2=="main" {print $4}' | grep -qx online; then
  $SUDO pg_ctlcluster "$ver" main start >&2
fi
port=$(pg_lsclusters -h | awk '$1=="'"$ver"'" && $2=="main" {print $3}')
for _ in $(seq 1 30); do
  $SUDO runuser -u postgres -- psql -p "$port" -qAtc 'select 1' >/dev/null 2>&1 && break
  sleep 1
done
$SUDO runuser -u postgres -- psql -p "$port" -qAtc \
  "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='gentbox_test') THEN
     CREATE ROLE gentbox_test LOGIN CREATEDB PASSWORD 'gentbox_test'; END IF; END\$\$;" >&2
# CREATEROLE: tests/integration/test_audit_owner.py makes an application role and an audit owner role
# of its own and hardens a database with `gentbox db harden` as this role (ALTER is idempotent).
$SUDO runuser -u postgres -- psql -p "$port" -qAtc "ALTER ROLE gentbox_test CREATEROLE" >&2
echo "export GENTBOX_TEST_POSTGRES_URL=postgresql://gentbox_test:gentbox_test@127.0.0.1:$port/postgres"
