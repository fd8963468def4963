#!/usr/bin/env bash
# The documentation site (mkdocs.yml, docs/): `bash scripts/docs.sh` builds it into site/ with
# --strict (a broken link, a missing page or any warning fails, as in CI); `bash scripts/docs.sh serve`
# serves it on http://127.0.0.1:8000/ and rebuilds on every change. Installs the docs extra if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/mkdocs ]; then
  bash scripts/install.sh
fi
. .venv/bin/activate
export HF_HUB_OFFLINE=1
case "${1:-build}" in
  build) exec mkdocs build --strict "${@:2}" ;;
  serve) exec mkdocs serve --strict "${@:2}" ;;
  *) echo "usage: bash scripts/docs.sh [build|serve] [mkdocs options]" >&2; exit 2 ;;
esac
