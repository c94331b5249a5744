#!/usr/bin/env node
// Builds guardd's own native addons for the Node running this script, as part of `npm run build`:
// every native/<name>/ with a binding.gyp becomes native/<name>/build/Release/<name>.node (today
// peercred: control-socket peer credentials; procevents: Linux exec events; execperm: Linux
// pre-exec deny; sched: Linux time slice; pathwalk: batched lstat; fileid: a file's identity with
// its mount; quickexit: _exit, so a pool thread stuck in a user's FUSE mount cannot hold an exit). Offline: npm's bundled node-gyp against the headers
// installed next to this Node (<prefix>/include/node), never a download. A failed build is a
// warning, not an error: the module that loads the addon falls back (per-connection control
// limits, /proc polling, no pre-exec deny, the default time slice) and the addon's own tests fail
// loudly.
//
// Platform gating lives in each addon's binding.gyp: a target that does not apply to this OS is
// `"type": "none"` under a condition (procevents: OS!='linux'), so the build succeeds and produces
// no .node, and the addon is skipped here. Nothing is built on Windows (no addon serves it; named
// pipes and ps-list need none). installers/node-runtime.sh and installers/build-package.sh build
// and stage the same set for the packaged runtime.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nativeRoot = join(root, 'native');

if (process.platform === 'win32') process.exit(0);

function nodeGyp() {
  const candidates = [
    process.env.TOOLGUARD_NODE_GYP,
    process.env.npm_config_node_gyp,
    process.env.npm_execpath && join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((p) => p && existsSync(p)) ?? null;
}

function nodeDir() {
  const prefix = resolve(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) return prefix;
  const configured = process.env.npm_config_nodedir;
  if (configured && existsSync(join(configured, 'include', 'node', 'node_api.h'))) return configured;
  return null;
}

function warn(name, why) {
  process.stderr.write(`build-native: ${name} addon not built (${why}); guardd runs without it (see native/${name})\n`);
}

/** The addons: every native/<name>/ holding a binding.gyp, sorted by name. */
function addons() {
  if (!existsSync(nativeRoot)) return [];
  return readdirSync(nativeRoot, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(nativeRoot, d.name, 'binding.gyp')))
    .map((d) => d.name)
    .sort();
}

/** The files an addon is built from (its binding.gyp and sources at the top of its directory). */
function sources(dir) {
  return readdirSync(dir).filter((f) => f === 'binding.gyp' || /\.(c|cc|cpp|h|hh)$/.test(f));
}

const mtime = (p) => statSync(p).mtimeMs;
let gyp;
let nodedir;

for (const name of addons()) {
  const dir = join(nativeRoot, name);
  // Up to date (N-API: one build serves every Node with these headers' API version): skip, so a
  // concurrent build never deletes an addon another process is loading.
  const built = join(dir, 'build', 'Release', `${name}.node`);
  if (existsSync(built) && sources(dir).every((f) => mtime(join(dir, f)) < mtime(built))) continue;
  // A gated addon (type none here) leaves no .node behind; its build stamp says it was tried.
  const stamp = join(dir, 'build', 'not-for-this-platform');
  if (existsSync(stamp) && sources(dir).every((f) => mtime(join(dir, f)) < mtime(stamp))) continue;

  gyp ??= nodeGyp();
  if (!gyp) {
    warn(name, "npm's bundled node-gyp not found; set TOOLGUARD_NODE_GYP");
    continue;
  }
  nodedir ??= nodeDir();
  if (!nodedir) {
    warn(name, `no Node headers (include/node/node_api.h) next to ${process.execPath}`);
    continue;
  }
  const env = { ...process.env, npm_config_nodedir: nodedir };
  const r = spawnSync(process.execPath, [gyp, 'rebuild', '--release', `--nodedir=${nodedir}`, '-C', dir], {
    env,
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    process.stderr.write(`${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').slice(-30).join('\n'));
    warn(name, `node-gyp exited ${r.status ?? r.signal}; needs python3, make and a C compiler`);
    continue;
  }
  if (!existsSync(built)) {
    writeFileSync(stamp, `${name} has no target for ${process.platform} (binding.gyp)\n`);
  }
}
