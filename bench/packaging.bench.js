// Packaging benchmark (installers/build-package.sh on the built dist/): what pruning saves in the
// payload (production-only staged app vs the checkout's full node_modules), .deb build time and size
// with CI's fast compression (gzip -1) vs the release default (xz -1), install time into a scratch
// root with dpkg --root (root only), and start-up of `guardctl --version` through the bundled Node
// in the installed tree vs the checkout. Prints measured numbers only.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '..');
/** Start-up samples per variant: enough for a stable median of a ~50 ms process. */
const STARTS = 10;
const dir = mkdtempSync(join(tmpdir(), 'tg-pkg-bench-'));

function tree(path) {
  let bytes = 0;
  let files = 0;
  const walk = (p) => {
    for (const e of readdirSync(p, { withFileTypes: true })) {
      const f = join(p, e.name);
      if (e.isDirectory()) walk(f);
      else if (e.isFile()) {
        bytes += statSync(f).size;
        files++;
      }
    }
  };
  walk(path);
  return { bytes, files };
}

function build(format, out, env = {}) {
  const t0 = process.hrtime.bigint();
  const res = spawnSync('bash', [join(REPO, 'installers/build-package.sh'), format], {
    cwd: REPO,
    encoding: 'utf8',
    env: { ...process.env, TOOLGUARD_PKG_OUT: out, ...env },
    timeout: 170_000,
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (res.status !== 0) throw new Error(`build-package.sh ${format}: ${res.stderr}`);
  return { path: res.stdout.trim().split('\n').at(-1), ms };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function startup(cmd, args) {
  const samples = [];
  for (let i = 0; i < STARTS; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  }
  return median(samples);
}

const MB = (b) => (b / 1024 / 1024).toFixed(1);
const rows = [];
try {
  const full = tree(join(REPO, 'node_modules'));
  const staged = build('stage', join(dir, 'stage'));
  const prod = tree(join(staged.path, 'opt/toolguard/app/node_modules'));
  rows.push(['node_modules: checkout (dev + prod)', `${MB(full.bytes)} MB`, `${full.files} files`, '']);
  rows.push([
    'node_modules: packaged (prod, pruned)',
    `${MB(prod.bytes)} MB`,
    `${prod.files} files`,
    `staged in ${(staged.ms / 1000).toFixed(1)} s`,
  ]);
  const fast = build('deb', join(dir, 'fast'), { TOOLGUARD_PKG_FAST: '1' });
  const xz = build('deb', join(dir, 'xz'));
  rows.push([
    '.deb gzip -1 (CI)',
    `${MB(statSync(fast.path).size)} MB`,
    '',
    `built in ${(fast.ms / 1000).toFixed(1)} s`,
  ]);
  rows.push([
    '.deb xz -1 (release default)',
    `${MB(statSync(xz.path).size)} MB`,
    '',
    `built in ${(xz.ms / 1000).toFixed(1)} s`,
  ]);

  let installed = null;
  if (process.getuid?.() === 0) {
    const root = join(dir, 'root');
    for (const d of ['var/lib/dpkg/info', 'var/lib/dpkg/updates', 'var/log'])
      mkdirSync(join(root, d), { recursive: true });
    writeFileSync(join(root, 'var/lib/dpkg/status'), '');
    const t0 = process.hrtime.bigint();
    execFileSync(
      'dpkg',
      [
        `--root=${root}`,
        `--log=${join(root, 'var/log/dpkg.log')}`,
        '--force-script-chrootless',
        '--force-depends',
        '-i',
        fast.path,
      ],
      { stdio: 'ignore' },
    );
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    rows.push(['dpkg -i (gzip -1) into a scratch root', '', '', `${(ms / 1000).toFixed(2)} s`]);
    installed = root;
  } else {
    rows.push(['dpkg -i into a scratch root', '', '', 'not measured (needs root)']);
  }

  const checkout = startup(process.execPath, [join(REPO, 'bin/guardctl.js'), '--version']);
  rows.push([`guardctl --version, checkout (median of ${STARTS})`, '', '', `${checkout.toFixed(0)} ms`]);
  if (installed) {
    const packaged = startup(join(installed, 'opt/toolguard/node/bin/node'), [
      join(installed, 'opt/toolguard/app/bin/guardctl.js'),
      '--version',
    ]);
    rows.push([`guardctl --version, packaged (median of ${STARTS})`, '', '', `${packaged.toFixed(0)} ms`]);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i].length), 4));
console.log('packaging (installers/build-package.sh)');
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i])).join('  '));
