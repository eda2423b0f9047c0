#!/usr/bin/env bash
# Check a rendered report by hand with the real renderers:
#   scripts/render_check/check.sh report.md     -> every ```mermaid block through mermaid-cli (SVGs in out/)
#   scripts/render_check/check.sh report.html   -> a headless-Chromium screenshot (out/report.png)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
in="$(realpath "$1")"
mkdir -p "$here/out"
case "$in" in
    *.md)
        PUPPETEER_SKIP_DOWNLOAD=1 PUPPETEER_EXECUTABLE_PATH=/usr/bin/chromium \
            "$here/node_modules/.bin/mmdc" -p "$here/puppeteer-config.json" -i "$in" -o "$here/out/$(basename "$in")"
        ls -l "$here"/out/*.svg ;;
    *.html|*.htm)
        chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,2400 \
            --screenshot="$here/out/$(basename "${in%.*}").png" "file://$in" 2>/dev/null
        ls -l "$here/out/$(basename "${in%.*}").png" ;;
    *) echo "usage: $0 REPORT.md|REPORT.html" >&2; exit 2 ;;
esac
