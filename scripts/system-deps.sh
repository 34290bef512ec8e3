#!/usr/bin/env bash
# Installs what the test suite needs beyond Python packages. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-chromium.sh
bash scripts/test-tools.sh >/dev/null
exit 0
