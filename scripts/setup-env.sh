#!/usr/bin/env bash
# Create (or refresh) .venv with umt and everything its tests need. Idempotent; run from anywhere.
#
# torch: the CPU-capable torch 2.14.1 + torchvision 0.29.1 pair (torchvision wheels must match the
# torch build). Override with UMT_TORCH_SPEC, e.g. UMT_TORCH_SPEC="torch==2.13.0" (no torchvision).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
TORCH_SPEC="${UMT_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
# pip's status is kept (pipefail); only the local index's "is ignored" chatter is filtered.
pip_install() { .venv/bin/pip install -q "$@" 2>&1 | { grep -v "is ignored" || true; }; }
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  pip_install $TORCH_SPEC
fi
pip_install -e ".[test]"
.venv/bin/python -c "import umt, torch; print(f'umt {umt.__version__} ready (torch {torch.__version__})')"
