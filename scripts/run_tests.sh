#!/usr/bin/env bash
# Install everything the test suite needs, then run it: bash scripts/run_tests.sh [pytest args]
# Slow tests are deselected by default; run them with: bash scripts/run_tests.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh dev,train,demo,data,lora
# System packages for the dataset-rendering and browser tests (they skip, saying why, when absent).
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q fluidsynth fluid-soundfont-gm chromium chromium-driver ffmpeg >/dev/null 2>&1 \
    || echo "note: apt-get could not install fluidsynth/chromium; those tests will be skipped" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
