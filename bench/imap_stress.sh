#!/usr/bin/env bash
# IMAP stress (issue 25), imaptest's spirit: 10 imaplib sessions doing random FETCH/STORE/SEARCH/
# EXPUNGE/APPEND/MOVE on one INBOX while mail arrives over SMTP, checking UIDs, sequence numbers
# and flags (tests/integration/test_imap_stress.py, which the suite runs for 10 s).
# Usage: bench/imap_stress.sh [SECONDS] [sqlite|postgres]   (default: 120 s on both backends)
set -euo pipefail
cd "$(dirname "$0")/.."
export IMAP_STRESS_SECONDS=${1:-120} PYTHONPATH=.
backend=${2:-}
exec .venv/bin/pytest -q -p no:cacheprovider tests/integration/test_imap_stress.py ${backend:+-k "$backend"}
