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
#   /Library/Application Support/toolguard/config.json, enroll-secret   only with TOOLGUARD_PKG_CONFIG_DIR
#                                           (`guardctl package --format pkg`): the organisation's config,
#                                           0644, and the enroll secret, root:wheel 0600 in the payload
#                                           itself (never readable by users, not even during the install)
#
#   bash installers/macos/build-pkg.sh --stage DIR   (any OS) only the payload root (DIR/root) and the
#                                           install scripts (DIR/scripts) as pkgbuild would pack them,
#                                           with this machine's pinned runtime in place of the Mac's:
#                                           what the tests check on Linux (files, modes, postinstall)
set -euo pipefail
SIGN=""
STAGE=""
case "${1:-}" in
--sign) SIGN="${2:?--sign needs an identity}" ;;
--stage) STAGE="${2:?--stage needs a directory}" ;;
esac
[ -n "$STAGE" ] || [ "$(uname -s)" = Darwin ] || {
  echo "build-pkg.sh: run this on macOS (pkgbuild/productbuild); elsewhere only --stage DIR" >&2
  exit 1
}
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
[ -f dist/cli/guardctl-main.js ] || {
  echo "build-pkg.sh: run \`npm run build\` first" >&2
  exit 1
}
VERSION="${TOOLGUARD_PKG_VERSION:-$(node -p 'require("./package.json").version')}"
OUT="${TOOLGUARD_PKG_OUT:-build/packages}"
BAKED="${TOOLGUARD_PKG_CONFIG_DIR:-}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"
LIB="$ROOT/Library/toolguard"
mkdir -p "$LIB/node/bin" "$LIB/bin" "$ROOT/Library/LaunchDaemons" "$ROOT/usr/local/bin"
# Same staging as Linux (production deps only, tests stripped, policy/ included) with the Mac's
# Node 24 and the checkout's darwin addon; the stage step checks the major. (--stage: the pinned
# runtime of this machine, only to lay out the payload.) The inner stage never gets the baked config.
RUNTIME_ENV=(TOOLGUARD_RUNTIME=host)
[ -z "$STAGE" ] || RUNTIME_ENV=()
env -u TOOLGUARD_PKG_CONFIG_DIR "${RUNTIME_ENV[@]}" TOOLGUARD_PKG_OUT="$WORK/stage-out" \
  bash installers/build-package.sh stage >/dev/null
cp -a "$WORK/stage-out/stage/opt/toolguard/app" "$LIB/app"
install -m 0755 "$WORK/stage-out/stage/opt/toolguard/node/bin/node" "$LIB/node/bin/node"
for prog in guardctl guardd; do
  printf '#!/bin/sh\nexec /Library/toolguard/node/bin/node /Library/toolguard/app/bin/%s.js "$@"\n' "$prog" >"$LIB/bin/$prog"
  chmod 0755 "$LIB/bin/$prog"
done
ln -s /Library/toolguard/bin/guardctl "$ROOT/usr/local/bin/guardctl"
install -m 0644 service/macos/io.toolguard.guardd.plist "$ROOT/Library/LaunchDaemons/"
# guardctl(1), guardd(8) and their completions, where macOS's man and the shells (Homebrew's bash
# completion, zsh's site-functions, fish's vendor dir) look under /usr/local.
mkdir -p "$ROOT/usr/local/share/man/man1" "$ROOT/usr/local/share/man/man8" \
  "$ROOT/usr/local/etc/bash_completion.d" "$ROOT/usr/local/share/zsh/site-functions" \
  "$ROOT/usr/local/share/fish/vendor_completions.d"
for page in guardctl.1 guardd.8; do
  prog="${page%.*}"
  install -m 0644 "docs/man/$page" "$ROOT/usr/local/share/man/man${page##*.}/$page"
  install -m 0644 "docs/completions/$prog.bash" "$ROOT/usr/local/etc/bash_completion.d/$prog"
  install -m 0644 "docs/completions/_$prog" "$ROOT/usr/local/share/zsh/site-functions/_$prog"
  install -m 0644 "docs/completions/$prog.fish" "$ROOT/usr/local/share/fish/vendor_completions.d/$prog.fish"
done
if [ -n "$BAKED" ]; then
  [ -f "$BAKED/config.json" ] && [ -f "$BAKED/enroll-secret" ] || {
    echo "build-pkg.sh: TOOLGUARD_PKG_CONFIG_DIR needs config.json and enroll-secret ($BAKED)" >&2
    exit 1
  }
  ETC="$ROOT/Library/Application Support/toolguard"
  mkdir -p "$ETC"
  chmod 0755 "$ETC"
  install -m 0644 "$BAKED/config.json" "$ETC/config.json"
  (umask 077 && install -m 0600 "$BAKED/enroll-secret" "$ETC/enroll-secret")
  echo "build-pkg.sh: baked in the organisation's config ($BAKED)" >&2
fi
chmod -R go-w "$ROOT"

if [ -n "$STAGE" ]; then
  rm -rf "$STAGE"
  mkdir -p "$STAGE"
  cp -a "$ROOT" "$STAGE/root"
  cp -a installers/macos/scripts "$STAGE/scripts"
  echo "$STAGE"
  exit 0
fi

pkgbuild --root "$ROOT" --identifier io.toolguard.guardd --version "$VERSION" \
  --scripts installers/macos/scripts --install-location / --ownership recommended \
  "$WORK/toolguard-component.pkg"
PKG="$OUT/toolguard-$VERSION.pkg"
rm -f "$PKG"
if [ -n "$BAKED" ]; then
  # holds the enroll secret: its builder's alone from the first byte, like the .deb/.rpm
  (umask 077 && productbuild --package "$WORK/toolguard-component.pkg" ${SIGN:+--sign "$SIGN"} "$PKG")
  chmod 0600 "$PKG"
else
  productbuild --package "$WORK/toolguard-component.pkg" ${SIGN:+--sign "$SIGN"} "$PKG"
fi
echo "$PKG"
