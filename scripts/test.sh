#!/usr/bin/env bash
# The tests: install, then pytest (a few minutes on 2 CPU cores; no network, no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
exec python -m pytest -q "$@"
