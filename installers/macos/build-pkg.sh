#!/usr/bin/env bash
# Builds the macOS installer package. RUN ON A MAC (pkgbuild/productbuild are macOS-only) WITH NODE 24
# LTS (the major installers/runtime.json pins), after `npm ci && npm run build` on that Mac, so
# node_modules' native addon (better-sqlite3) and the bundled node are both darwin builds of the same
# Node 24 (the registry here carries no node-darwin-* package to pin, so the Mac's own node is
# bundled; build-package.sh's TOOLGUARD_RUNTIME=host refuses any other major):
#
#   bash installers/macos/build-pkg.sh [--sign "Developer ID Installer: Org (TEAMID)"]
#
# Payload (root:wheel, nothing user-writable):
#   /Library/toolguard/node/bin/node       bundled runtime (copy of the node running this script)
#   /Library/toolguard/app/…                dist/, bin/, policy/, package.json, production node_modules
#   /Library/toolguard/bin/guardctl         wrapper; /usr/local/bin/guardctl symlink for users' PATH
#                                           (only guardctl — the service never runs from /usr/local)
#   /Library/LaunchDaemons/io.toolguard.guardd.plist
# scripts/preinstall stops a running guardd (upgrade); scripts/postinstall creates the state and log
# dirs and bootstraps the daemon with `launchctl bootstrap system`.
# Notarize the signed product with `xcrun notarytool submit --wait` before distributing it.
set -euo pipefail
[ "$(uname -s)" = Darwin ] || {
  echo "build-pkg.sh: run this on macOS (pkgbuild/productbuild)" >&2
  exit 1
}
SIGN=""
if [ "${1:-}" = "--sign" ]; then SIGN="${2:?--sign needs an identity}"; fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
[ -f dist/cli/guardctl-main.js ] || {
  echo "build-pkg.sh: run \`npm run build\` first" >&2
  exit 1
}
VERSION="${TOOLGUARD_PKG_VERSION:-$(node -p 'require("./package.json").version')}"
OUT="${TOOLGUARD_PKG_OUT:-build/packages}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"
LIB="$ROOT/Library/toolguard"
mkdir -p "$LIB/node/bin" "$LIB/bin" "$ROOT/Library/LaunchDaemons" "$ROOT/usr/local/bin"
# Same staging as Linux (production deps only, tests stripped, policy/ included) with the Mac's
# Node 24 and the checkout's darwin addon; the stage step checks the major.
TOOLGUARD_RUNTIME=host TOOLGUARD_PKG_OUT="$WORK/stage-out" bash installers/build-package.sh stage >/dev/null
cp -a "$WORK/stage-out/stage/opt/toolguard/app" "$LIB/app"
install -m 0755 "$WORK/stage-out/stage/opt/toolguard/node/bin/node" "$LIB/node/bin/node"
for prog in guardctl guardd; do
  printf '#!/bin/sh\nexec /Library/toolguard/node/bin/node /Library/toolguard/app/bin/%s.js "$@"\n' "$prog" >"$LIB/bin/$prog"
  chmod 0755 "$LIB/bin/$prog"
done
ln -s /Library/toolguard/bin/guardctl "$ROOT/usr/local/bin/guardctl"
install -m 0644 service/macos/io.toolguard.guardd.plist "$ROOT/Library/LaunchDaemons/"
chmod -R go-w "$ROOT"

pkgbuild --root "$ROOT" --identifier io.toolguard.guardd --version "$VERSION" \
  --scripts installers/macos/scripts --install-location / --ownership recommended \
  "$WORK/toolguard-component.pkg"
productbuild --package "$WORK/toolguard-component.pkg" ${SIGN:+--sign "$SIGN"} "$OUT/toolguard-$VERSION.pkg"
echo "$OUT/toolguard-$VERSION.pkg"
