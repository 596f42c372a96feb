#!/usr/bin/env bash
# Installs the project (scripts/setup_env.sh) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
python -m pytest tests -q "$@"
