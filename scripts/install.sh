#!/usr/bin/env bash
# Install tokenclock into ./.venv (created if missing). torch comes first and pinned, so that no
# dependency pulls a multi-GB CUDA build: on these machines `pip install torch==2.13.0` is a local
# CPU wheel. On a GPU machine, install the torch build you want before running this. A venv that
# already holds this checkout's install (same pyproject.toml) is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
fi
. .venv/bin/activate
stamp=.venv/.tokenclock-install
want="$(sha256sum pyproject.toml | cut -c1-64) $PWD"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && python -c "import tokenclock, torch" >/dev/null 2>&1; then
  exit 0
fi
if ! python -c "import torch" >/dev/null 2>&1; then
  python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
python -m pip install -q -e ".[test,docs,hf,lightning]"   # docs: the site build; hf, lightning: the tracker's framework tests
echo "$want" > "$stamp"
