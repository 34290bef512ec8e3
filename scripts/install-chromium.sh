#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (Playwright drives it via executable_path;
# Playwright's own browser download is never used). Idempotent: instant when already present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
