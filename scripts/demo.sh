#!/usr/bin/env bash
# The main job: install, then the whole T-axis study on the built-in corpus (5-15 min on 2 CPU cores, install included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
exec tokenclock demo --out "${1:-runs/demo}"
