#!/usr/bin/env bash
# Headless-Chromium screenshot of a built page: tools/screenshot.sh PAGE.html OUT.png [WIDTH,HEIGHT]
# Used to check that the book renders offline (typeset math, figures) without a browser window.
# Needs Debian's chromium (apt-get install -y chromium); no network access is used or needed.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 PAGE.html OUT.png [WIDTH,HEIGHT]   (e.g. book/_build/html/intro.html intro.png)" >&2
    exit 2
fi
page="$1"; out="$2"; size="${3:-1280,2000}"
[[ -f "$page" ]] || { echo "screenshot: $page does not exist; build the book first (make book)" >&2; exit 1; }

browser=""
for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null; then browser="$candidate"; break; fi
done
[[ -n "$browser" ]] || { echo "screenshot: no chromium found; apt-get update && apt-get install -y chromium" >&2; exit 1; }

page_abs="$(cd "$(dirname "$page")" && pwd)/$(basename "$page")"
mkdir -p "$(dirname "$out")"
out_abs="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT

# --virtual-time-budget lets MathJax (loaded with defer) finish typesetting before the capture.
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --hide-scrollbars --virtual-time-budget=10000 \
    --user-data-dir="$profile" --window-size="$size" \
    --screenshot="$out_abs" "file://$page_abs" >/dev/null 2>"$profile/chromium.log" || {
        cat "$profile/chromium.log" >&2; exit 1; }
[[ -s "$out_abs" ]] || { echo "screenshot: chromium wrote no image" >&2; cat "$profile/chromium.log" >&2; exit 1; }
echo "screenshot: $out_abs"
