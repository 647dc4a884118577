#!/usr/bin/env bash
# The README's test command: setup, then every test (unit, integration as root, conformance).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx vitest run "$@"
