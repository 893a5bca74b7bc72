#!/usr/bin/env bash
# A headless Chromium screenshot of an HTML report, as a reader first sees it (1280 px wide).
#   benchmarks/screenshot.sh results/h100/table8.html results/h100/table8.html.png
# Chromium from the OS packages (apt-get install chromium); flags for a sandboxed root session
# without a network.
set -euo pipefail
page=$(realpath "$1")
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size=1280,1600 --screenshot="$(realpath -m "$2")" "file://$page" 2>/dev/null
