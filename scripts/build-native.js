#!/usr/bin/env node
// Builds native/peercred (guardd's peer-credentials addon, src/control/peer-credentials.ts) for the
// Node running this script, as part of `npm run build`. Offline: npm's bundled node-gyp against the
// headers installed next to this Node (<prefix>/include/node), never a download. A failed build is
// a warning, not an error: guardd then runs with per-connection control limits (docs/security.md,
// "Local control sockets"), and the addon's own tests fail loudly. Not built on Windows (named pipes).
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'native', 'peercred');

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

function warn(why) {
  process.stderr.write(
    `build-native: peercred addon not built (${why}); guardd will keep per-connection control limits\n`,
  );
  process.exit(0);
}

// Up to date (N-API: one build serves every Node with these headers' API version): skip, so a
// concurrent build never deletes an addon another process is loading.
const built = join(dir, 'build', 'Release', 'peercred.node');
const mtime = (p) => statSync(p).mtimeMs;
if (existsSync(built) && ['peercred.c', 'binding.gyp'].every((f) => mtime(join(dir, f)) < mtime(built))) process.exit(0);

const gyp = nodeGyp();
if (!gyp) warn("npm's bundled node-gyp not found; set TOOLGUARD_NODE_GYP");
const nodedir = nodeDir();
if (!nodedir) warn(`no Node headers (include/node/node_api.h) next to ${process.execPath}`);
const env = { ...process.env, npm_config_nodedir: nodedir };
const r = spawnSync(process.execPath, [gyp, 'rebuild', '--release', `--nodedir=${nodedir}`, '-C', dir], {
  env,
  encoding: 'utf8',
});
if (r.status !== 0) {
  process.stderr.write(`${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').slice(-30).join('\n'));
  warn(`node-gyp exited ${r.status ?? r.signal}; needs python3, make and a C compiler`);
}
