#!/usr/bin/env bash
# Copy MathJax 3 into book/_static/mathjax/ so the book renders math with no internet.
#
# Source, in order of preference:
#   1. $MATHJAX_TGZ: a local mathjax-3.x.y.tgz (e.g. from an earlier `npm pack`), for offline CI;
#   2. `npm pack mathjax@$MATHJAX_VERSION` from the npm registry (needs npm, no node_modules).
# The tarball's sha512 is checked against the registry's integrity field when npm fetched it.
# Idempotent: does nothing when the wanted version is already in place (--force to redo).
set -euo pipefail

MATHJAX_VERSION="${MATHJAX_VERSION:-3.2.2}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/book/_static/mathjax"
STAMP="$DEST/.version"

if [[ "${1:-}" != "--force" && -f "$STAMP" && "$(cat "$STAMP")" == "$MATHJAX_VERSION" \
      && -f "$DEST/tex-chtml.js" ]]; then
    echo "fetch_mathjax: MathJax $MATHJAX_VERSION already in $DEST"
    exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [[ -n "${MATHJAX_TGZ:-}" ]]; then
    [[ -f "$MATHJAX_TGZ" ]] || { echo "fetch_mathjax: MATHJAX_TGZ=$MATHJAX_TGZ does not exist" >&2; exit 1; }
    cp "$MATHJAX_TGZ" "$WORK/mathjax.tgz"
else
    command -v npm >/dev/null || {
        echo "fetch_mathjax: npm is needed (apt-get install npm, or set MATHJAX_TGZ=path/to/mathjax-$MATHJAX_VERSION.tgz)" >&2
        exit 1; }
    (cd "$WORK" && npm pack --silent "mathjax@$MATHJAX_VERSION" >/dev/null)
    mv "$WORK"/mathjax-*.tgz "$WORK/mathjax.tgz"
    want="$(npm view "mathjax@$MATHJAX_VERSION" dist.integrity 2>/dev/null || true)"
    if [[ "$want" == sha512-* ]] && command -v openssl >/dev/null; then
        got="sha512-$(openssl dgst -sha512 -binary "$WORK/mathjax.tgz" | openssl base64 -A)"
        [[ "$got" == "$want" ]] || { echo "fetch_mathjax: integrity mismatch ($got != $want)" >&2; exit 1; }
    fi
fi

tar -xzf "$WORK/mathjax.tgz" -C "$WORK"
ES5="$WORK/package/es5"
[[ -f "$ES5/tex-chtml.js" ]] || { echo "fetch_mathjax: $ES5/tex-chtml.js missing; not a MathJax 3 package?" >&2; exit 1; }

# Keep the combined TeX->CommonHTML component and what it may load lazily (fonts, TeX
# extensions, menu, accessibility); drop the other combined bundles (about 13 MB).
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
cp "$ES5/tex-chtml.js" "$ES5/startup.js" "$ES5/loader.js" "$ES5/core.js" "$DEST.tmp/"
for d in a11y adaptors input output ui sre; do cp -r "$ES5/$d" "$DEST.tmp/"; done
cp "$WORK/package/LICENSE" "$DEST.tmp/LICENSE" 2>/dev/null || true
echo "$MATHJAX_VERSION" > "$DEST.tmp/.version"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "fetch_mathjax: MathJax $MATHJAX_VERSION copied to $DEST ($(du -sh "$DEST" | cut -f1))"
