#!/usr/bin/env bash
# Make sure python3 can create virtual environments (Debian splits venv into python3-venv).
set -euo pipefail
if python3 -c 'import ensurepip, venv' 2>/dev/null; then exit 0; fi
echo "python3-venv is missing; installing it with apt-get." >&2
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq python3-venv
