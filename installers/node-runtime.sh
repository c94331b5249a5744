#!/usr/bin/env bash
# The Node runtime toolguard's packages bundle (installers/runtime.json: Node 24 LTS, pinned by
# version and sha512), better-sqlite3's native addon compiled for it, and guardd's own addons (every
# native/<name>/ with a binding.gyp: peercred, procevents, …, small C files compiled the same way,
# each cached by the sha256 of its sources; one whose binding.gyp has no target for the platform is
# left out).
#
#   bash installers/node-runtime.sh linux-x64|win-x64
#       fetches the runtime (and, for linux-x64, builds the addon) into the cache, then prints
#       "node_dir=… node_version=… addon=… peercred=… native=…" (addons empty for win-x64: not compiled here)
#
# build-package.sh sources this file and calls tg_prepare_runtime. Only the ordinary npm client
# talks to the network (`npm pack node-<platform>@<version>` from the configured registry); the
# tarball is refused unless its sha512 equals the pinned integrity. The addon is compiled from the
# checkout's node_modules/better-sqlite3 sources (a copy: the checkout's own addon stays built for
# the development Node) with npm's bundled node-gyp against the runtime's include/node headers, and
# cached under (better-sqlite3 version, Node version, platform): deb, rpm and stage builds in one
# run compile SQLite once (~1.5 min on 2 cores). A lock file serialises concurrent builds, so
# parallel package builds wait for one compile instead of racing.
#
# Environment (optional):
#   TOOLGUARD_CACHE      cache dir (default: <repo>/build/cache)
#   TOOLGUARD_NODE_GYP   node-gyp.js to use (default: the one bundled with npm)
#   TOOLGUARD_RUNTIME_JSON  the pin file (default: installers/runtime.json; tests point it elsewhere)
set -euo pipefail

TG_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TG_CACHE="${TOOLGUARD_CACHE:-$TG_REPO/build/cache}"
TG_RUNTIME_JSON="${TOOLGUARD_RUNTIME_JSON:-$TG_REPO/installers/runtime.json}"

tg_log() { echo "node-runtime: $*" >&2; }
tg_die() {
  echo "node-runtime: $*" >&2
  exit 1
}

# tg_runtime_entry PLATFORM: prints "package version integrity major" from runtime.json.
tg_runtime_entry() {
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const e = r.platforms[process.argv[2]];
    if (!e) { console.error("no runtime pinned for " + process.argv[2] + " in installers/runtime.json"); process.exit(1); }
    console.log([e.package, e.version, e.integrity, r.major].join(" "));' \
    "$TG_RUNTIME_JSON" "$1"
}

# tg_sha512 FILE: the file's digest in npm's integrity form (sha512-<base64>).
tg_sha512() {
  node -e '
    const h = require("crypto").createHash("sha512");
    const s = require("fs").createReadStream(process.argv[1]);
    s.on("data", (d) => h.update(d));
    s.on("end", () => console.log("sha512-" + h.digest("base64")));' "$1"
}

# tg_node_gyp: npm's bundled node-gyp (the one `npm rebuild` would run).
tg_node_gyp() {
  if [ -n "${TOOLGUARD_NODE_GYP:-}" ]; then
    echo "$TOOLGUARD_NODE_GYP"
    return
  fi
  local cli gyp
  cli="$(readlink -f "$(command -v npm)")"
  gyp="$(dirname "$cli")/../node_modules/node-gyp/bin/node-gyp.js"
  [ -f "$gyp" ] || gyp="$(npm prefix -g)/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
  [ -f "$gyp" ] || tg_die "npm's bundled node-gyp not found; set TOOLGUARD_NODE_GYP"
  readlink -f "$gyp"
}

# tg_fetch_node PLATFORM: sets TG_NODE_DIR and TG_NODE_VERSION (caller holds the lock).
tg_fetch_node() {
  local platform="$1" entry pkg ver integrity major
  entry="$(tg_runtime_entry "$platform")"
  read -r pkg ver integrity major <<<"$entry"
  TG_NODE_VERSION="$ver"
  TG_NODE_DIR="$TG_CACHE/$pkg-$ver"
  if [ -f "$TG_NODE_DIR/.integrity" ] && [ "$(cat "$TG_NODE_DIR/.integrity")" = "$integrity" ]; then
    return
  fi
  local tgz="$TG_CACHE/$pkg-$ver.tgz"
  if [ ! -f "$tgz" ]; then
    tg_log "fetching $pkg@$ver with npm pack"
    (cd "$TG_CACHE" && npm pack "$pkg@$ver" --pack-destination "$TG_CACHE" --silent >/dev/null) ||
      tg_die "npm pack $pkg@$ver failed (registry reachable? see docs/install.md)"
  fi
  local actual
  actual="$(tg_sha512 "$tgz")"
  if [ "$actual" != "$integrity" ]; then
    rm -f "$tgz"
    tg_die "$pkg@$ver: tarball sha512 $actual differs from the pinned $integrity (installers/runtime.json); refused"
  fi
  local tmp
  tmp="$(mktemp -d "$TG_CACHE/.extract.XXXXXX")"
  tar xzf "$tgz" -C "$tmp"
  rm -rf "$TG_NODE_DIR"
  mv "$tmp/package" "$TG_NODE_DIR"
  rm -rf "$tmp"
  echo "$integrity" >"$TG_NODE_DIR/.integrity"
}

# tg_build_addon PLATFORM: sets TG_ADDON, better_sqlite3.node for TG_NODE_DIR (caller holds the lock).
tg_build_addon() {
  local platform="$1"
  local bs="$TG_REPO/node_modules/better-sqlite3"
  [ -f "$bs/binding.gyp" ] && [ -d "$bs/deps" ] && [ -d "$bs/src" ] ||
    tg_die "better-sqlite3's sources are missing in node_modules: run \`npm ci\` first"
  local bsver
  bsver="$(node -p 'require(process.argv[1]).version' "$bs/package.json")"
  local out="$TG_CACHE/better-sqlite3-$bsver-node-$TG_NODE_VERSION-$platform"
  TG_ADDON="$out/better_sqlite3.node"
  [ -f "$TG_ADDON" ] && return
  [ -d "$TG_NODE_DIR/include/node" ] || tg_die "$TG_NODE_DIR has no include/node headers"
  local gyp src started
  gyp="$(tg_node_gyp)"
  src="$(mktemp -d "$TG_CACHE/.better-sqlite3.XXXXXX")"
  (cd "$bs" && tar cf - --exclude=./build .) | tar xf - -C "$src"
  tg_log "compiling better-sqlite3 $bsver for Node $TG_NODE_VERSION ($platform) with node-gyp"
  started=$(date +%s)
  # node-gyp lets npm_config_* from the environment (npm/npx export the user's npmrc, e.g. a
  # `nodedir=/usr` of the system Node) override its flags: drop them all and name the headers twice.
  local unset_npm=()
  local v
  for v in $(compgen -e); do
    case "$v" in npm_config_* | NPM_CONFIG_*) unset_npm+=(-u "$v") ;; esac
  done
  if ! (cd "$src" && env "${unset_npm[@]}" npm_config_nodedir="$TG_NODE_DIR" \
    node "$gyp" rebuild --release --nodedir="$TG_NODE_DIR" -j "$(nproc)" >"$src.log" 2>&1); then
    tail -n 40 "$src.log" >&2
    rm -rf "$src"
    tg_die "node-gyp failed (needs python3, make, g++: .ci/system-deps.sh); full log $src.log"
  fi
  # The addon must load in the runtime it was built for before it is cached.
  "$TG_NODE_DIR/bin/node" -e '
    const D = require(process.argv[1] + "/lib");
    const db = new D(":memory:", { nativeBinding: process.argv[2] });
    if (db.prepare("select 1 as x").get().x !== 1) process.exit(1);' \
    "$src" "$src/build/Release/better_sqlite3.node" || {
    rm -rf "$src"
    tg_die "the addon built for Node $TG_NODE_VERSION does not load in it (build log: $src.log)"
  }
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  cp "$src/build/Release/better_sqlite3.node" "$out.tmp/"
  rm -rf "$out"
  mv "$out.tmp" "$out"
  rm -rf "$src" "$src.log"
  tg_log "compiled in $(($(date +%s) - started)) s, cached as $out"
}

# tg_addon_check NAME NODE_FILE: the addon works in the runtime it was built for. peercred must read
# a real socket's peer; every other addon must at least load (`require`).
tg_addon_check() {
  local name="$1" file="$2"
  case "$name" in
  peercred)
    "$TG_NODE_DIR/bin/node" -e '
      const a = require(process.argv[1]); const net = require("net");
      const p = require("path").join(require("os").tmpdir(), "tg-peercred-" + process.pid + ".sock");
      const s = net.createServer((c) => {
        const r = a.peerCredentials(c._handle.fd);
        c.destroy(); s.close();
        if (r.pid !== process.pid || r.uid !== process.getuid()) process.exit(1);
      }).listen(p, () => net.connect(p).on("error", () => {}));' "$file"
    ;;
  *) "$TG_NODE_DIR/bin/node" -e 'require(process.argv[1])' "$file" ;;
  esac
}

# tg_build_native_one NAME PLATFORM: prints the path of native/NAME's addon compiled for TG_NODE_DIR
# (cached by the sha256 of its sources), or nothing when its binding.gyp has no target here.
tg_build_native_one() {
  local name="$1" platform="$2"
  local srcdir="$TG_REPO/native/$name"
  local files
  files="$(cd "$srcdir" && find . -maxdepth 1 -type f \( -name binding.gyp -o -name '*.c' -o -name '*.cc' \
    -o -name '*.cpp' -o -name '*.h' -o -name '*.hh' \) | sort)"
  local sum
  sum="$(cd "$srcdir" && cat $files | sha256sum | cut -c1-16)"
  local out="$TG_CACHE/$name-$sum-node-$TG_NODE_VERSION-$platform"
  if [ -f "$out/$name.node" ]; then
    echo "$out/$name.node"
    return
  fi
  [ -f "$out/none" ] && return
  local gyp src
  gyp="$(tg_node_gyp)"
  src="$(mktemp -d "$TG_CACHE/.$name.XXXXXX")"
  (cd "$srcdir" && cp $files "$src/")
  local unset_npm=()
  local v
  for v in $(compgen -e); do
    case "$v" in npm_config_* | NPM_CONFIG_*) unset_npm+=(-u "$v") ;; esac
  done
  if ! (cd "$src" && env "${unset_npm[@]}" npm_config_nodedir="$TG_NODE_DIR" \
    node "$gyp" rebuild --release --nodedir="$TG_NODE_DIR" >"$src.log" 2>&1); then
    tail -n 40 "$src.log" >&2
    rm -rf "$src"
    tg_die "node-gyp failed for native/$name; full log $src.log"
  fi
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  if [ -f "$src/build/Release/$name.node" ]; then
    # It must work in the runtime it was built for before it is cached.
    tg_addon_check "$name" "$src/build/Release/$name.node" >&2 || {
      rm -rf "$src" "$out.tmp"
      tg_die "native/$name built for Node $TG_NODE_VERSION does not work in it (build log: $src.log)"
    }
    cp "$src/build/Release/$name.node" "$out.tmp/"
  else
    # binding.gyp gates it off this platform (a target of type none): remembered, not rebuilt.
    echo "$platform" >"$out.tmp/none"
  fi
  rm -rf "$out"
  mv "$out.tmp" "$out"
  rm -rf "$src" "$src.log"
  [ -f "$out/$name.node" ] && echo "$out/$name.node"
  return 0
}

# tg_build_native PLATFORM: sets TG_NATIVE, the compiled addons of every native/<name>/ holding a
# binding.gyp, one path per line (<cache>/<name>-…/<name>.node), and TG_PEERCRED, peercred's
# (caller holds the lock). An addon gated off this platform by its binding.gyp is left out.
tg_build_native() {
  local platform="$1" dir name path
  TG_NATIVE=""
  TG_PEERCRED=""
  [ -f "$TG_REPO/native/peercred/binding.gyp" ] || tg_die "native/peercred sources are missing"
  for dir in "$TG_REPO"/native/*/; do
    name="$(basename "$dir")"
    [ -f "$dir/binding.gyp" ] || continue
    path="$(tg_build_native_one "$name" "$platform")"
    [ -n "$path" ] || continue
    TG_NATIVE="${TG_NATIVE:+$TG_NATIVE
}$path"
    [ "$name" = peercred ] && TG_PEERCRED="$path"
  done
  return 0
}

# tg_prepare_runtime PLATFORM: TG_NODE_DIR, TG_NODE_VERSION and (linux) TG_ADDON, under the cache lock.
tg_prepare_runtime() {
  local platform="$1"
  mkdir -p "$TG_CACHE"
  exec 9>"$TG_CACHE/.lock"
  flock 9
  tg_fetch_node "$platform"
  TG_ADDON=""
  TG_PEERCRED=""
  TG_NATIVE=""
  case "$platform" in linux-*)
    tg_build_addon "$platform"
    tg_build_native "$platform"
    ;;
  esac
  flock -u 9
  exec 9>&-
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  [ $# -eq 1 ] || tg_die "usage: $0 linux-x64|win-x64"
  tg_prepare_runtime "$1"
  echo "node_dir=$TG_NODE_DIR node_version=$TG_NODE_VERSION addon=$TG_ADDON peercred=$TG_PEERCRED native=$(echo $TG_NATIVE)"
fi
