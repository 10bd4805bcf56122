#!/usr/bin/env bash
# Swagger UI for /docs, served from the package (no internet needed at run time): the
# pinned swagger-ui-dist from the npm registry, fetched once into a cache with `npm pack`,
# its integrity checked against the pinned hash, then the few files /docs serves (and the
# licence) copied into cinemate/static/swagger-ui. Idempotent.
# Usage: scripts/docs-assets.sh [DEST_DIR]   (default: cinemate/static/swagger-ui)
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=5.35.0
INTEGRITY="sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ=="
FILES="swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt"
DEST="${1:-cinemate/static/swagger-ui}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/cinemate/npm"
TARBALL="$CACHE/swagger-ui-dist-$VERSION.tgz"

if [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]; then
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "docs-assets: npm is needed once to fetch swagger-ui-dist $VERSION for /docs" >&2
    exit 1
fi
integrity() {  # npm's own format: sha512-<base64>; node is there wherever npm is
    node -e 'const c = require("crypto"), f = require("fs");
             console.log("sha512-" + c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$1"
}
mkdir -p "$CACHE"
if [ ! -f "$TARBALL" ] || [ "$(integrity "$TARBALL")" != "$INTEGRITY" ]; then
    rm -f "$TARBALL"
    (cd "$CACHE" && npm pack "swagger-ui-dist@$VERSION" --silent >/dev/null)
fi
actual="$(integrity "$TARBALL")"
if [ "$actual" != "$INTEGRITY" ]; then
    echo "docs-assets: $TARBALL has integrity $actual, expected $INTEGRITY; refusing it" >&2
    rm -f "$TARBALL"
    exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
members=""
for file in $FILES; do members="$members package/$file"; done
# shellcheck disable=SC2086
tar -xzf "$TARBALL" -C "$work" $members
mkdir -p "$DEST"
for file in $FILES; do cp "$work/package/$file" "$DEST/$file"; done
echo "$VERSION" > "$DEST/VERSION"
