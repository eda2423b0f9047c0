#!/usr/bin/env bash
# Installs what the render checks need: Debian's Chromium and mermaid-cli
# (pinned by package-lock.json) without letting puppeteer download a browser.
# Safe to run repeatedly; tests skip with a reason when this was not run.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y --no-install-recommends chromium
    else
        echo "chromium missing: sudo apt-get install -y --no-install-recommends chromium" >&2
    fi
fi
if [ ! -x node_modules/.bin/mmdc ]; then
    if command -v npm >/dev/null 2>&1; then
        PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund
    else
        echo "npm missing: Mermaid checks will be skipped" >&2
    fi
fi
