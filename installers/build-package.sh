#!/usr/bin/env bash
# Builds toolguard's OS packages from what `npm run build` produced.
#
#   bash installers/build-package.sh deb|rpm|msi|stage|collector-deb|collector-rpm|collector-stage
#
# deb/rpm/msi/stage: the endpoint agent (guardd, guardctl), without the collector's code or the
# dependencies only it imports. collector-deb/collector-rpm/collector-stage: guard-collector's own
# package (/opt/guard-collector, its hardened unit, /etc/guard-collector/collector.json, a postinst /
# %post that restarts it onto the new code on upgrade; the unit's ExecStartPre migrates the store).
#
# Every package carries its own runtime: Node 24 LTS as pinned in installers/runtime.json (fetched
# with `npm pack` and checked against its sha512 by installers/node-runtime.sh; never the Node
# running this script), better-sqlite3's addon compiled for exactly that Node, the built dist/,
# bin/, package.json, policy/ (the policy schema and example body the programs read at run time),
# docs/ and production node_modules only (dev dependencies pruned offline, tests/docs of
# dependencies dropped). Layout on Linux:
#   /opt/toolguard/node/bin/node        bundled runtime (root-owned, 0755), /opt/toolguard/node/LICENSE
#   /opt/toolguard/app/{bin,dist,policy,node_modules,package.json,docs}
#   /opt/toolguard/bin/{guardd,guardctl}   wrappers that run the bundled node
#   /usr/bin/guardctl -> /opt/toolguard/bin/guardctl        on users' PATH
#   /usr/lib/systemd/system/toolguard.service
#   /etc/toolguard/config.json          conffile (kept on upgrade; removed on purge)
#   /etc/toolguard/enroll-secret        root:root 0600 conffile, only in a package with a baked config
#   /usr/share/man/man1/guardctl.1.gz, /usr/share/man/man8/guardd.8.gz, and for guardctl and guardd
#   /usr/share/bash-completion/completions/<prog>, /usr/share/zsh/vendor-completions/_<prog>,
#   /usr/share/fish/vendor_completions.d/<prog>.fish (the collector package: guard-collector's)
#   /var/lib/toolguard                  state, 0700 root, created by postinst, removed on purge only
#
# Environment (all optional):
#   TOOLGUARD_PKG_VERSION   package version (default: package.json "version")
#   TOOLGUARD_PKG_OUT       output dir (default: build/packages)
#   TOOLGUARD_PKG_FAST=1    fast compression for CI (deb: gzip -1, rpm: w1.gzdio); default xz -1
#   TOOLGUARD_PKG_CONFIG_DIR  deb/rpm/msi/stage: the organisation's config baked in (`guardctl package` writes
#                           it): DIR/config.json replaces the empty template and DIR/enroll-secret is
#                           installed as /etc/toolguard/enroll-secret (root:root 0600); both conffiles
#   TOOLGUARD_CACHE         runtime/addon cache (default: build/cache; see installers/node-runtime.sh)
#   TOOLGUARD_RUNTIME=host  deb/rpm/stage: bundle the Node running this script and the checkout's
#                           own better-sqlite3 build instead of the pinned runtime (macOS and
#                           architectures runtime.json does not pin); its major must be runtime.json's
#   TOOLGUARD_WIN_RUNTIME   msi only: dir with toolguard-service.exe (WinSW x64) and the win32-x64
#                           better_sqlite3.node built for Node 24 (node.exe comes from runtime.json);
#                           both must be Windows PE files (see docs/install.md)
#   TOOLGUARD_WIN_STANDINS=1  msi only, tests: accept non-PE stand-ins for those two files; the msi
#                           is then named *-STANDINS.msi and must never be distributed
set -euo pipefail

FORMAT="${1:-}"
case "$FORMAT" in deb | rpm | msi | stage | collector-deb | collector-rpm | collector-stage) ;; *)
  echo "usage: $0 deb|rpm|msi|stage|collector-deb|collector-rpm|collector-stage" >&2
  exit 2
  ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
[ -f dist/cli/guardctl-main.js ] || {
  echo "build-package: dist/ is missing: run \`npm run build\` first" >&2
  exit 1
}

VERSION="${TOOLGUARD_PKG_VERSION:-$(node -p 'require("./package.json").version')}"
OUT="$(mkdir -p "${TOOLGUARD_PKG_OUT:-build/packages}" && cd "${TOOLGUARD_PKG_OUT:-build/packages}" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tg-pkg.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
log() { echo "build-package[$FORMAT]: $*" >&2; }
# shellcheck source=installers/node-runtime.sh
source "$REPO/installers/node-runtime.sh"

# The runtime to bundle: NODE_BIN (Linux/macOS), NODE_LICENSE (may be empty), ADDON, the
# better_sqlite3.node that goes into the payload, PEERCRED, guardd's peer credentials addon (required),
# and NATIVE, every one of guardd's own addons built for this runtime (one .node path per line).
prepare_unix_runtime() {
  if [ "${TOOLGUARD_RUNTIME:-}" = host ]; then
    NODE_BIN="$(node -p process.execPath)"
    NODE_LICENSE=""
    ADDON="$REPO/node_modules/better-sqlite3/build/Release/better_sqlite3.node"
    PEERCRED="$REPO/native/peercred/build/Release/peercred.node" # N-API: `npm run build` made it for this node
    # The addons `npm run build` made for this node (those gated off this OS by binding.gyp have none).
    NATIVE="$(for d in "$REPO"/native/*/; do
      n="$(basename "$d")"
      [ -f "$d/binding.gyp" ] && [ -f "$d/build/Release/$n.node" ] && echo "$d/build/Release/$n.node"
    done || true)"
    local want have
    want="$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).major' "$TG_RUNTIME_JSON")"
    have="$(node -p 'process.versions.node.split(".")[0]')"
    [ "$have" = "$want" ] || {
      echo "build-package: TOOLGUARD_RUNTIME=host needs Node $want (this is $(node --version))" >&2
      exit 1
    }
    # The checkout's addon must be the one `npm ci` built for this very node.
    node -e '
      const D = require(process.argv[1]);
      new D(":memory:", { nativeBinding: process.argv[2] }).close();' \
      "$REPO/node_modules/better-sqlite3" "$ADDON" || {
      echo "build-package: the checkout's better-sqlite3 addon does not load in $(node --version): run \`npm ci\` with it" >&2
      exit 1
    }
    log "bundling the host's Node $(node --version) and the checkout's better-sqlite3 build"
  else
    local platform
    case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) platform=linux-x64 ;;
    *)
      echo "build-package: installers/runtime.json pins no runtime for $(uname -s)-$(uname -m);" \
        "use TOOLGUARD_RUNTIME=host with Node $(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).major' "$TG_RUNTIME_JSON")" >&2
      exit 1
      ;;
    esac
    tg_prepare_runtime "$platform"
    NODE_BIN="$TG_NODE_DIR/bin/node"
    NODE_LICENSE="$TG_NODE_DIR/LICENSE"
    ADDON="$TG_ADDON"
    PEERCRED="$TG_PEERCRED"
    NATIVE="$TG_NATIVE"
    log "bundling Node $TG_NODE_VERSION ($platform, installers/runtime.json)"
  fi
  [ -f "$ADDON" ] || {
    echo "build-package: better-sqlite3's compiled addon is missing ($ADDON)" >&2
    exit 1
  }
  [ -f "$PEERCRED" ] || {
    echo "build-package: the peer credentials addon is missing ($PEERCRED; \`npm run build\` builds it)" >&2
    exit 1
  }
}

# agent_only_dependencies APP: rewrites APP/package.json's dependencies to those the staged code
# (APP/dist, APP/bin) imports, so the prune that follows drops what only the collector needed,
# with every transitive dependency no kept one needs. A bare import of a package the checkout does
# not declare fails the build (it would fail at run time).
agent_only_dependencies() {
  node -e '
    const fs = require("fs"), path = require("path");
    const app = process.argv[1];
    const pkgFile = path.join(app, "package.json");
    const pkg = JSON.parse(fs.readFileSync(pkgFile, "utf8"));
    const used = new Set();
    const walk = (d) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.(c|m)?js$/.test(e.name)) {
          const text = fs.readFileSync(p, "utf8");
          const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\(\s*|^import\s*)["\x27]((?:node:|@)?[a-z0-9][\w.-]*(?:\/[\w.-]+)*)["\x27]/gm;
          for (const m of text.matchAll(re)) {
            const spec = m[1];
            if (spec.startsWith(".") || spec.startsWith("/") || spec.startsWith("node:")) continue;
            const parts = spec.split("/");
            used.add(spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]);
          }
        }
      }
    };
    walk(path.join(app, "dist"));
    walk(path.join(app, "bin"));
    const builtins = new Set(require("module").builtinModules);
    const deps = pkg.dependencies || {};
    const missing = [...used].filter((n) => !builtins.has(n) && !(n in deps));
    if (missing.length) { console.error("build-package: the agent imports undeclared packages: " + missing.join(", ")); process.exit(1); }
    const kept = Object.fromEntries(Object.entries(deps).filter(([n]) => used.has(n)));
    const dropped = Object.keys(deps).filter((n) => !used.has(n));
    pkg.dependencies = kept;
    fs.writeFileSync(pkgFile, JSON.stringify(pkg, null, 2) + "\n");
    if (dropped.length) console.error("build-package: not in the agent package (collector only): " + dropped.join(", "));
  ' "$1"
}

# ---------------------------------------------------------------------------------------------
# stage_app DIR ADDON [NATIVE] [KIND]: KIND agent (default: no collector code, no dependency only the
# collector imports) or collector (all of dist/). The app with production dependencies only, ADDON as better-sqlite3's
# native addon and each path of NATIVE (one per line: guardd's own addons, none on Windows), named
# <name>.node, as native/<name>/build/Release/<name>.node, where the code loads it from. Everything the programs read at run time next to their code (policy/ for the schema
# and local mode's example body, package.json for the version, dist/ for the parse worker) is
# copied; the packaging tests list those reads from dist/ (runtimeReads) and check every payload.
stage_app() {
  local app="$1" addon="$2" native="${3:-}" kind="${4:-agent}" node name
  mkdir -p "$app"
  cp -a package.json package-lock.json bin dist policy "$app/"
  if [ "$kind" = agent ]; then
    # The collector has its own package (guard-collector): the agent's carries neither its code
    # nor the dependencies only it imports (guardd loads it only in local mode, from a checkout).
    rm -rf "$app/dist/collector" "$app/dist/console" "$app/bin/guard-collector.js"
    agent_only_dependencies "$app"
  fi
  while IFS= read -r node; do
    [ -n "$node" ] || continue
    name="$(basename "$node" .node)"
    mkdir -p "$app/native/$name/build/Release"
    install -m 0755 "$node" "$app/native/$name/build/Release/$name.node"
  done <<<"$native"
  if [ -d docs ]; then cp -a docs "$app/docs"; fi
  # ... and neither the collector's man page nor its completions (its package installs them)
  [ "$kind" != agent ] || rm -f "$app/docs/man/guard-collector.8" "$app/docs/completions/"*guard-collector*
  cp -a node_modules "$app/node_modules"
  # Offline: pruning only deletes what the lockfile marks dev; nothing is downloaded or rebuilt
  # (install scripts off, so better-sqlite3 is not recompiled for the Node running this script).
  (cd "$app" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  rm -f "$app/package-lock.json"
  # The version the package reports (`guardctl --version` reads package.json).
  node -e '
    const fs = require("fs"); const f = process.argv[1];
    const p = JSON.parse(fs.readFileSync(f, "utf8"));
    p.version = process.argv[2]; delete p.devDependencies; delete p.scripts;
    fs.writeFileSync(f, JSON.stringify(p, null, 2) + "\n");' "$app/package.json" "$VERSION"
  local nm="$app/node_modules"
  # better-sqlite3: only the addon built for the bundled runtime (the checkout's build is for the
  # development Node; build objects, the SQLite amalgamation and the test extension are build-time).
  local bs="$nm/better-sqlite3"
  rm -rf "$bs/build" "$bs/deps" "$bs/src"
  mkdir -p "$bs/build/Release"
  install -m 0755 "$addon" "$bs/build/Release/better_sqlite3.node"
  # Tests, CI files and empty scope dirs of dependencies never ship (the payload test checks this).
  find "$nm" -depth \( -type d \( -name test -o -name tests -o -name __tests__ -o -name .github \
    -o -name benchmark -o -name benchmarks -o -name example -o -name examples \) \) -exec rm -rf {} +
  find "$nm" -type f \( -name '*.test.js' -o -name '*.spec.js' -o -name '*.test.mjs' -o -name '*.test.ts' \
    -o -name '*.test-d.ts' -o -name 'test.js' -o -name 'test-*.js' -o -name '.eslintrc*' -o -name '.npmignore' \
    -o -name '.travis.yml' -o -name '*.map' \) -delete
  find "$nm" -mindepth 1 -type d -empty -delete
  find "$app/dist" -type f -name '*.map' -delete
  # Nothing writable by group or others, whatever the umask of the checkout was.
  chmod -R u+rwX,go+rX,go-w "$app"
}

# stage_root DIR: the Linux filesystem tree of the package.
stage_root() {
  local root="$1"
  local opt="$root/opt/toolguard"
  mkdir -p "$opt/node/bin" "$opt/bin" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/etc/toolguard"
  prepare_unix_runtime
  install -m 0755 "$NODE_BIN" "$opt/node/bin/node"
  if [ -n "$NODE_LICENSE" ]; then install -m 0644 "$NODE_LICENSE" "$opt/node/LICENSE"; fi
  stage_app "$opt/app" "$ADDON" "$NATIVE"
  local prog
  for prog in guardd guardctl; do
    cat >"$opt/bin/$prog" <<EOF
#!/bin/sh
# $prog with toolguard's bundled Node runtime (never a user's nvm/Homebrew node).
exec /opt/toolguard/node/bin/node /opt/toolguard/app/bin/$prog.js "\$@"
EOF
    chmod 0755 "$opt/bin/$prog"
  done
  ln -s /opt/toolguard/bin/guardctl "$root/usr/bin/guardctl"
  install -m 0644 service/linux/toolguard.service "$root/usr/lib/systemd/system/"
  local baked="${TOOLGUARD_PKG_CONFIG_DIR:-}"
  if [ -n "$baked" ]; then
    [ -f "$baked/config.json" ] && [ -f "$baked/enroll-secret" ] || {
      echo "build-package: TOOLGUARD_PKG_CONFIG_DIR needs config.json and enroll-secret ($baked)" >&2
      exit 1
    }
    install -m 0644 "$baked/config.json" "$root/etc/toolguard/config.json"
    install -m 0600 "$baked/enroll-secret" "$root/etc/toolguard/enroll-secret"
    log "baked in the organisation's config ($baked)"
  else
    install -m 0644 installers/linux/config.json "$root/etc/toolguard/config.json"
  fi
  chmod 0755 "$root/etc/toolguard"
  install_cli_reference "$root" guardctl.1 guardd.8
}

# install_cli_reference ROOT PAGE...: each program's man page (PAGE = name.section, gzipped) and its
# bash/zsh/fish completions (generated by `npm run docs`), where man and the shells look.
install_cli_reference() {
  local root="$1" page prog section
  shift
  for page in "$@"; do
    prog="${page%.*}" section="${page##*.}"
    mkdir -p "$root/usr/share/man/man$section" "$root/usr/share/bash-completion/completions" \
      "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
    gzip -9n <"docs/man/$page" >"$root/usr/share/man/man$section/$page.gz"
    chmod 0644 "$root/usr/share/man/man$section/$page.gz"
    install -m 0644 "docs/completions/$prog.bash" "$root/usr/share/bash-completion/completions/$prog"
    install -m 0644 "docs/completions/_$prog" "$root/usr/share/zsh/vendor-completions/_$prog"
    install -m 0644 "docs/completions/$prog.fish" "$root/usr/share/fish/vendor_completions.d/$prog.fish"
  done
}

# stage_collector_root DIR: the Linux tree of the guard-collector package, beside (never inside)
# the agent's /opt/toolguard, so one host can carry both packages.
stage_collector_root() {
  local root="$1"
  local opt="$root/opt/guard-collector"
  mkdir -p "$opt/node/bin" "$opt/bin" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/etc/guard-collector"
  prepare_unix_runtime
  install -m 0755 "$NODE_BIN" "$opt/node/bin/node"
  if [ -n "$NODE_LICENSE" ]; then install -m 0644 "$NODE_LICENSE" "$opt/node/LICENSE"; fi
  # No guardd addons: the collector loads none of them.
  stage_app "$opt/app" "$ADDON" "" collector
  cat >"$opt/bin/guard-collector" <<'WRAPPER'
#!/bin/sh
# guard-collector with its package's bundled Node runtime (never a node found on PATH).
exec /opt/guard-collector/node/bin/node /opt/guard-collector/app/bin/guard-collector.js "$@"
WRAPPER
  chmod 0755 "$opt/bin/guard-collector"
  install -D -m 0755 installers/collector/configure.sh "$opt/lib/configure.sh"
  ln -s /opt/guard-collector/bin/guard-collector "$root/usr/bin/guard-collector"
  install -m 0644 service/linux/guard-collector.service "$root/usr/lib/systemd/system/"
  install -m 0644 installers/collector/collector.json "$root/etc/guard-collector/collector.json"
  chmod 0755 "$root/etc/guard-collector"
  install_cli_reference "$root" guard-collector.8
}

# glibc_floor ROOT: the newest GLIBC_x.y symbol version any native file of the payload needs (the
# bundled node: 2.28; the addon compiled on this machine may need more, e.g. 2.34 on Debian 12).
# The packages depend on that version, so a machine with an older glibc refuses the install instead
# of running a guardd that cannot open its database.
glibc_floor() {
  local v
  v="$(find "$1" -type f \( -path '*/node/bin/node' -o -name '*.node' \) -print0 |
    xargs -0 objdump -T | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -n1)"
  [ -n "$v" ] || {
    echo "build-package: no GLIBC symbol versions found in the payload (objdump missing?)" >&2
    exit 1
  }
  echo "$v"
}

# ---------------------------------------------------------------------------------------------
build_deb() {
  local root="$WORK/deb"
  stage_root "$root"
  local glibc
  glibc="$(glibc_floor "$root")"
  local arch
  arch="$(dpkg --print-architecture)"
  mkdir -p "$root/DEBIAN"
  local size
  size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
  cat >"$root/DEBIAN/control" <<EOF
Package: toolguard
Version: $VERSION
Architecture: $arch
Maintainer: toolguard maintainers <toolguard@example.invalid>
Installed-Size: $size
Depends: libc6 (>= $glibc), libstdc++6 (>= 10), libgcc-s1
Section: admin
Priority: optional
Homepage: https://github.com/toolguard/toolguard
Description: endpoint policy enforcement: keeps banned developer tools off machines
 guardd watches process launches and installed tools, matches them against a signed ban list,
 blocks or warns and reports to a central guard-collector. Ships its own Node runtime
 in /opt/toolguard; guardctl shows what it does.
EOF
  echo /etc/toolguard/config.json >"$root/DEBIAN/conffiles"
  if [ -f "$root/etc/toolguard/enroll-secret" ]; then echo /etc/toolguard/enroll-secret >>"$root/DEBIAN/conffiles"; fi
  local s
  for s in postinst prerm postrm; do install -m 0755 "installers/deb/$s" "$root/DEBIAN/$s"; done
  # xz -1: the bundled Node dominates the payload; level 6 saves ~15% more for ~5x the build time.
  local comp=(-Zxz -z1)
  [ "${TOOLGUARD_PKG_FAST:-}" = 1 ] && comp=(-Zgzip -z1)
  local deb="$OUT/toolguard_${VERSION}_${arch}.deb"
  if [ -f "$root/etc/toolguard/enroll-secret" ]; then
    # The payload holds the enroll secret: the package file is root's alone from its first byte
    # (anyone who can read a .deb can extract it, whatever the file's mode inside).
    rm -f "$deb"
    (umask 077 && dpkg-deb --root-owner-group "${comp[@]}" --build "$root" "$deb" >/dev/null)
    chmod 0600 "$deb"
  else
    dpkg-deb --root-owner-group "${comp[@]}" --build "$root" "$deb" >/dev/null
  fi
  log "built $deb"
  echo "$deb"
}

build_collector_deb() {
  local root="$WORK/collector-deb"
  stage_collector_root "$root"
  local glibc arch size
  glibc="$(glibc_floor "$root")"
  arch="$(dpkg --print-architecture)"
  mkdir -p "$root/DEBIAN"
  size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
  cat >"$root/DEBIAN/control" <<CONTROL
Package: guard-collector
Version: $VERSION
Architecture: $arch
Maintainer: toolguard maintainers <toolguard@example.invalid>
Installed-Size: $size
Depends: libc6 (>= $glibc), libstdc++6 (>= 10), libgcc-s1
Section: admin
Priority: optional
Homepage: https://github.com/toolguard/toolguard
Description: toolguard's central collector: enrollment, signed ban list, event ingest
 guard-collector enrolls toolguard agents, serves them the signed ban list, stores their events
 idempotently and forwards them to the organisation's log pipeline. Ships its own Node runtime
 in /opt/guard-collector; runs as a hardened systemd service (dynamic user).
CONTROL
  echo /etc/guard-collector/collector.json >"$root/DEBIAN/conffiles"
  local s
  for s in postinst prerm postrm; do install -m 0755 "installers/collector/deb/$s" "$root/DEBIAN/$s"; done
  local comp=(-Zxz -z1)
  [ "${TOOLGUARD_PKG_FAST:-}" = 1 ] && comp=(-Zgzip -z1)
  local deb="$OUT/guard-collector_${VERSION}_${arch}.deb"
  dpkg-deb --root-owner-group "${comp[@]}" --build "$root" "$deb" >/dev/null
  log "built $deb"
  echo "$deb"
}

# rpmbuild of `spec` over the staged `root` in the work dir `top` (extra --define pairs after);
# prints the built .rpm's path. One place for the checks and defines both rpms share.
run_rpmbuild() {
  local root="$1" top="$2" spec="$3"
  shift 3
  command -v rpmbuild >/dev/null || {
    echo "build-package: rpmbuild missing (Debian: apt-get install rpm; see .ci/system-deps.sh)" >&2
    exit 1
  }
  local glibc
  glibc="$(glibc_floor "$root")"
  mkdir -p "$top"/{BUILD,RPMS,SOURCES,SPECS,SRPMS,BUILDROOT}
  local payload="w1.xzdio" # same trade-off as the .deb
  [ "${TOOLGUARD_PKG_FAST:-}" = 1 ] && payload="w1.gzdio"
  # rpm versions cannot hold '-': a prerelease 1.2.0-rc.1 becomes 1.2.0~rc.1.
  rpmbuild -bb --quiet \
    --define "_topdir $top" \
    --define "_tg_stage $root" \
    --define "_tg_version ${VERSION//-/\~}" \
    --define "_tg_glibc $glibc" \
    --define "_binary_payload $payload" \
    --define "_build_id_links none" \
    "$@" \
    --target "$(uname -m)" \
    "$spec" >/dev/null
  find "$top/RPMS" -name '*.rpm' | head -n1
}

build_rpm() {
  local root="$WORK/rpmroot"
  stage_root "$root"
  local rpm
  rpm="$(run_rpmbuild "$root" "$WORK/rpmbuild" installers/rpm/toolguard.spec \
    --define "_tg_baked_secret $([ -f "$root/etc/toolguard/enroll-secret" ] && echo 1 || echo 0)")"
  if [ -f "$root/etc/toolguard/enroll-secret" ]; then
    # holds the enroll secret (see build_deb): root's alone from its first byte
    rm -f "$OUT/$(basename "$rpm")"
    (umask 077 && cp "$rpm" "$OUT/")
    chmod 0600 "$OUT/$(basename "$rpm")"
  else
    cp "$rpm" "$OUT/"
  fi
  log "built $OUT/$(basename "$rpm")"
  echo "$OUT/$(basename "$rpm")"
}

build_collector_rpm() {
  local root="$WORK/collector-rpmroot"
  stage_collector_root "$root"
  local rpm
  rpm="$(run_rpmbuild "$root" "$WORK/collector-rpmbuild" installers/collector/rpm/guard-collector.spec)"
  cp "$rpm" "$OUT/"
  log "built $OUT/$(basename "$rpm")"
  echo "$OUT/$(basename "$rpm")"
}

build_msi() {
  command -v wixl >/dev/null || {
    echo "build-package: wixl missing (Debian: apt-get install wixl; see .ci/system-deps.sh)" >&2
    exit 1
  }
  local rt="${TOOLGUARD_WIN_RUNTIME:-}"
  if [ -z "$rt" ] || [ ! -f "$rt/toolguard-service.exe" ] || [ ! -f "$rt/better_sqlite3.node" ]; then
    echo "build-package: set TOOLGUARD_WIN_RUNTIME to a dir with toolguard-service.exe (WinSW x64)" \
      "and better_sqlite3.node (better-sqlite3 win32-x64 built for Node 24); node.exe comes from" \
      "installers/runtime.json; see docs/install.md" >&2
    exit 1
  fi
  local standins=""
  local f
  for f in toolguard-service.exe better_sqlite3.node; do
    if [ "$(head -c 2 "$rt/$f")" != MZ ]; then
      if [ "${TOOLGUARD_WIN_STANDINS:-}" = 1 ]; then
        standins="-STANDINS"
        log "WARNING: $rt/$f is not a Windows executable: a stand-in; the msi is for tests only"
      else
        echo "build-package: $rt/$f is not a Windows PE file" >&2
        exit 1
      fi
    fi
  done
  tg_prepare_runtime win-x64
  log "bundling Node $TG_NODE_VERSION (win-x64, installers/runtime.json)"
  local src="$WORK/msi/src"
  mkdir -p "$src/node" "$src/service"
  # The Windows build of the native addon goes in place of the Linux one.
  stage_app "$src/app" "$rt/better_sqlite3.node"
  cp "$TG_NODE_DIR/bin/node.exe" "$src/node/node.exe"
  cp "$rt/toolguard-service.exe" "$src/service/toolguard-service.exe"
  cp service/windows/toolguard-service.xml service/windows/win-setup.cjs "$src/service/"
  cp service/windows/guardctl.cmd "$src/guardctl.cmd"
  # Every app file is one component (wixl-heat); directories and GUIDs derive from the paths.
  (cd "$src" && find app -type f | sort |
    wixl-heat --prefix app/ --directory-ref APPDIR --var var.AppSrc --component-group AppFiles \
      >"$WORK/msi/app-files.wxs")
  # The organisation's config (`guardctl package --format msi`): installed into %ProgramData%\toolguard,
  # which the msi ACLs to SYSTEM and Administrators before installing any file (toolguard.wxs).
  local baked="${TOOLGUARD_PKG_CONFIG_DIR:-}" bakedvar=()
  if [ -n "$baked" ]; then
    [ -f "$baked/config.json" ] && [ -f "$baked/enroll-secret" ] || {
      echo "build-package: TOOLGUARD_PKG_CONFIG_DIR needs config.json and enroll-secret ($baked)" >&2
      exit 1
    }
    (umask 077 && mkdir -p "$src/config" && install -m 0644 "$baked/config.json" "$src/config/config.json" &&
      install -m 0600 "$baked/enroll-secret" "$src/config/enroll-secret")
    bakedvar=(-D BakedConfig=1)
    log "baked in the organisation's config ($baked)"
  fi
  local msiver="${VERSION%%-*}"
  local msi="$OUT/toolguard-${VERSION}-x64${standins}.msi"
  rm -f "$msi"
  # wixl resolves File sources relative to the working directory (absolute ones are refused). An msi
  # holding the enroll secret is its builder's alone from the first byte (like the .deb/.rpm).
  (cd "$src" && { [ -z "$baked" ] || umask 077; } && wixl -a x64 -D "Version=$msiver" -D SourceDir=. -D AppSrc=app \
    "${bakedvar[@]}" -o "$msi" "$REPO/installers/windows/toolguard.wxs" "$WORK/msi/app-files.wxs" 2>&1 |
    { grep -v -e '^$' -e 'GLib-GObject-WARNING' || true; } >&2)
  [ -s "$msi" ] || {
    echo "build-package: wixl failed" >&2
    exit 1
  }
  [ -z "$baked" ] || chmod 0600 "$msi"
  log "built $msi"
  echo "$msi"
}

case "$FORMAT" in
stage)
  dest="$OUT/stage"
  rm -rf "$dest"
  stage_root "$dest"
  log "staged $dest"
  echo "$dest"
  ;;
collector-stage)
  dest="$OUT/collector-stage"
  rm -rf "$dest"
  stage_collector_root "$dest"
  log "staged $dest"
  echo "$dest"
  ;;
deb) build_deb ;;
collector-deb) build_collector_deb ;;
collector-rpm) build_collector_rpm ;;
rpm) build_rpm ;;
msi) build_msi ;;
esac
