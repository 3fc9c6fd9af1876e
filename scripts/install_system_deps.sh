#!/usr/bin/env bash
# System packages the dashboard's real-browser test needs: Debian's chromium, driven
# headless by Playwright through executable_path=/usr/bin/chromium (no `playwright install`,
# which would download a browser build and cannot work offline).
# Idempotent: does nothing when chromium is already installed. Needs root (CI runs as root).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium already installed: $(chromium --version 2>/dev/null || echo unknown version)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "installed: $(chromium --version)"
