#!/usr/bin/env bash
# Install everything the test suite needs, then run it: bash scripts/run_tests.sh [pytest args]
# Slow tests are deselected by default; run them with: bash scripts/run_tests.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev,train
# System packages for the dataset-rendering tests (they skip, saying why, when these are absent).
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q fluidsynth fluid-soundfont-gm >/dev/null 2>&1 || echo "note: apt-get could not install fluidsynth" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
