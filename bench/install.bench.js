// Install sensor benchmark (dist/ build, real npm, temp dirs only):
//   1. install → quarantine latency: 20 × `npm install -g --prefix <tmp> <tarball> --offline` of a
//      fixture that mimics a banned package, watched by the InstallSensor + matcher + Enforcer +
//      QuarantineAction; time from npm's exit (and from its start) to the package.quarantined event,
//      next to how long npm itself took — p50/p95/p99/max;
//   2. cost of watching many node versions: 10 nvm versions × 200 packages each in a fake home;
//      file descriptors (/proc/self/fd), inotify watches and RSS of the InstallSensor against a naive
//      chokidar watch of the same roots at unlimited depth — each in its own child process so one
//      does not colour the other; plus the duration of one full rescan.
// Prints measured numbers only.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const INSTALLS = 20;
const VERSIONS = 10;
const PACKAGES_PER_VERSION = 200;
const BANNED = '@anthropic-ai/claude-code';
const FIXTURE = fileURLToPath(new URL('../test/fixtures/install/claude-code-fake', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

function policyBody() {
  return {
    schema: 'toolguard.policy/v1',
    version: 1,
    issued_at: '2026-01-01T00:00:00Z',
    expires_at: '2099-01-01T00:00:00Z',
    mode: 'enforce',
    rules: [
      {
        id: 'claude-code',
        name: 'Claude Code',
        action: 'block',
        message: 'not approved',
        packages: [{ ecosystem: 'npm', name: BANNED, range: '*' }],
      },
    ],
  };
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const fmt = (n) => (typeof n === 'number' ? n.toFixed(1) : String(n));

function fdCount() {
  return readdirSync('/proc/self/fd').length;
}

/** inotify watches held by this process (each `inotify wd:` line in the fdinfo of an inotify fd). */
function inotifyWatches() {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    let target = '';
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (!target.includes('inotify')) continue;
    try {
      n += readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('inotify wd:')).length;
    } catch {
      // fd closed meanwhile
    }
  }
  return n;
}

function rssMiB() {
  return process.memoryUsage().rss / 1024 / 1024;
}

function heapMiB() {
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

/** A fake home with VERSIONS nvm versions × PACKAGES_PER_VERSION packages (a tenth of them scoped). */
/** Each generated package: package.json, index.js, lib/a.js, lib/b.js (4 files + 2 dirs). */
function buildNvmHome(dir) {
  const home = join(dir, 'home', 'dev');
  for (let v = 0; v < VERSIONS; v++) {
    const root = join(home, '.nvm', 'versions', 'node', `v${18 + v}.0.0`, 'lib', 'node_modules');
    for (let p = 0; p < PACKAGES_PER_VERSION; p++) {
      const name = p % 10 === 0 ? `@scope${p % 7}/pkg-${p}` : `pkg-${p}`;
      const pkg = join(root, name);
      mkdirSync(join(pkg, 'lib'), { recursive: true });
      writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name, version: '1.0.0', main: 'index.js' }));
      writeFileSync(join(pkg, 'index.js'), 'module.exports = 1;\n');
      writeFileSync(join(pkg, 'lib', 'a.js'), 'exports.a = 1;\n');
      writeFileSync(join(pkg, 'lib', 'b.js'), 'exports.b = 2;\n');
    }
  }
  return home;
}

async function makeRig(dir, homes, extraRoots, onEvent) {
  const { silentLogger } = await import('../dist/common/logger.js');
  const { UserDirectory } = await import('../dist/common/users.js');
  const { QuarantineAction } = await import('../dist/enforcement/actions/quarantine.js');
  const { NotifyInstallAction } = await import('../dist/enforcement/actions/notify-install.js');
  const { Enforcer } = await import('../dist/enforcement/enforcer.js');
  const { QuarantineStore } = await import('../dist/enforcement/quarantine-store.js');
  const { compileMatcher } = await import('../dist/policy/matcher.js');
  const { InstallSensor } = await import('../dist/sensors/install-sensor.js');
  const { openDatabase } = await import('../dist/store/database.js');
  const { MIGRATIONS } = await import('../dist/store/migrations.js');
  const logger = silentLogger();
  const { db } = openDatabase(join(dir, 'state', 'state.db'), {
    migrations: MIGRATIONS,
    synchronous: 'NORMAL',
  });
  const store = new QuarantineStore({ db, quarantineDir: join(dir, 'state', 'quarantine'), logger });
  await store.init();
  const notifier = { notify: async () => ({ terminal: false, desktop: false, error: null }) };
  const noop = { execute: async () => ({ actionTaken: 'skipped', latencyMs: 0, error: null }) };
  const enforcer = new Enforcer({
    actions: {
      blockProcess: noop,
      notifyProcess: noop,
      quarantine: new QuarantineAction({ store, notifier, logger }),
      notifyInstall: new NotifyInstallAction({ notifier, logger }),
    },
    events: {
      emit: (type, fields) => {
        onEvent(type, fields);
        return null;
      },
    },
    logger,
    warnIntervalMs: 0,
  });
  const matcher = compileMatcher(policyBody(), { platform: 'linux', homes });
  const sensor = new InstallSensor({
    users: new UserDirectory({ platform: 'linux' }),
    platform: 'linux',
    rescanCron: '0 0 1 1 *',
    extraRoots,
    homes,
    systemRoots: false,
    logger,
    onObservation: async (obs) => {
      const d = matcher.match(obs, { now: Date.now(), hostname: 'bench', deviceTags: [] });
      if (d) await enforcer.handle(obs, d);
    },
  });
  sensor.setMatcher(matcher);
  return {
    sensor,
    store,
    close: async () => {
      await sensor.stop();
      db.close();
    },
  };
}

async function latencyBench(dir) {
  const pack = join(dir, 'pack');
  mkdirSync(pack, { recursive: true });
  execFileSync('npm', ['pack', FIXTURE, '--pack-destination', pack, '--silent'], { stdio: 'pipe' });
  const tarball = join(
    pack,
    readdirSync(pack).find((f) => f.endsWith('.tgz')),
  );
  const prefix = join(dir, 'prefix');
  const root = join(prefix, 'lib', 'node_modules');
  mkdirSync(root, { recursive: true });
  let waiter = null;
  const rig = await makeRig(dir, [], [root], (type) => {
    if (type === 'package.quarantined' && waiter) waiter(performance.now());
  });
  await rig.sensor.start();
  const fromExit = [];
  const fromStart = [];
  const npmMs = [];
  let beforeExit = 0;
  for (let i = 0; i < INSTALLS; i++) {
    const quarantined = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`install ${i}: no quarantine within 30 s`)), 30_000);
      waiter = (at) => {
        clearTimeout(t);
        resolve(at);
      };
    });
    const started = performance.now();
    const exited = await new Promise((resolve, reject) =>
      execFile(
        'npm',
        [
          'install',
          '-g',
          '--prefix',
          prefix,
          tarball,
          '--offline',
          '--no-audit',
          '--no-fund',
          '--loglevel=error',
        ],
        { timeout: 60_000 },
        (err) => (err ? reject(err) : resolve(performance.now())),
      ),
    );
    const at = await quarantined;
    waiter = null;
    npmMs.push(exited - started);
    fromStart.push(at - started);
    if (at < exited) beforeExit++;
    fromExit.push(Math.max(0, at - exited));
  }
  await rig.close();
  const row = (label, xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return `${label.padEnd(44)} ${fmt(pct(s, 50)).padStart(8)} ${fmt(pct(s, 95)).padStart(8)} ${fmt(pct(s, 99)).padStart(8)} ${fmt(s.at(-1)).padStart(8)}`;
  };
  console.log(`\ninstall → quarantine over ${INSTALLS} real npm installs (ms)`);
  console.log(
    `${''.padEnd(44)} ${'p50'.padStart(8)} ${'p95'.padStart(8)} ${'p99'.padStart(8)} ${'max'.padStart(8)}`,
  );
  console.log(row('npm install -g itself (start → exit)', npmMs));
  console.log(row('npm start → package.quarantined', fromStart));
  console.log(row('npm exit → package.quarantined (0 if before)', fromExit));
  console.log(`quarantined before npm had exited: ${beforeExit}/${INSTALLS} (during npm's postinstall)`);
  const p99 = [...fromExit].sort((a, b) => a - b);
  console.log(`target: p99 from npm exit < 2000 ms → measured p99 ${fmt(pct(p99, 99))} ms`);
}

/** Child: measure one watcher kind over the prepared home; prints one JSON line. */
async function child(kind, dir, home) {
  // Both kinds load the same modules (DB, logger, enforcer…) first, so ΔRSS is the watching alone.
  const rig = await makeRig(dir, [home], [], () => {});
  globalThis.gc?.();
  const before = { fds: fdCount(), watches: inotifyWatches(), rss: rssMiB(), heap: heapMiB() };
  const t0 = performance.now();
  let setupMs;
  let stop;
  let rescanMs = null;
  if (kind === 'sensor') {
    await rig.sensor.start();
    setupMs = performance.now() - t0;
    // Let the catch-up pass finish before measuring.
    await new Promise((r) => setTimeout(r, 1500));
    const r0 = performance.now();
    await rig.sensor.rescan();
    rescanMs = performance.now() - r0;
    stop = rig.close;
  } else {
    const { watch } = await import('chokidar');
    const roots = readdirSync(join(home, '.nvm', 'versions', 'node')).map((v) =>
      join(home, '.nvm', 'versions', 'node', v, 'lib', 'node_modules'),
    );
    const w = watch(roots, { ignoreInitial: true, followSymlinks: false });
    await new Promise((r) => w.once('ready', r));
    setupMs = performance.now() - t0;
    stop = async () => {
      await w.close();
      await rig.close();
    };
  }
  globalThis.gc?.();
  const after = { fds: fdCount(), watches: inotifyWatches(), rss: rssMiB(), heap: heapMiB() };
  let afterRescans = null;
  if (kind === 'sensor') {
    // Bounded means flat: five more full rescans must not grow what the sensor holds.
    for (let i = 0; i < 5; i++) await rig.sensor.rescan();
    globalThis.gc?.();
    afterRescans = { fds: fdCount(), watches: inotifyWatches(), rss: rssMiB(), heap: heapMiB() };
  }
  await stop();
  process.stdout.write(`${JSON.stringify({ kind, before, after, afterRescans, setupMs, rescanMs })}\n`);
}

async function handlesBench(dir) {
  const home = buildNvmHome(dir);
  const runs = [];
  for (const kind of ['sensor', 'naive']) {
    const r = spawnSync(process.execPath, ['--expose-gc', SELF, '--child', kind, join(dir, kind), home], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    if (r.status !== 0) throw new Error(`${kind} child failed: ${r.stderr}`);
    runs.push(JSON.parse(r.stdout.trim().split('\n').at(-1)));
  }
  console.log(
    `\nwatching ${VERSIONS} nvm versions × ${PACKAGES_PER_VERSION} packages (${VERSIONS * PACKAGES_PER_VERSION} packages, ${VERSIONS * PACKAGES_PER_VERSION * 6} files+dirs)`,
  );
  console.log(
    `${''.padEnd(40)} ${'fds'.padStart(6)} ${'inotify'.padStart(8)} ${'RSS MiB'.padStart(8)} ${'ΔRSS'.padStart(7)} ${'Δheap'.padStart(7)} ${'setup ms'.padStart(9)}`,
  );
  const line = (label, r, a) =>
    console.log(
      `${label.padEnd(40)} ${String(a.fds).padStart(6)} ${String(a.watches).padStart(8)} ${fmt(a.rss).padStart(8)} ${fmt(a.rss - r.before.rss).padStart(7)} ${fmt(a.heap - r.before.heap).padStart(7)} ${fmt(r.setupMs).padStart(9)}`,
    );
  for (const r of runs) {
    const label =
      r.kind === 'sensor' ? 'InstallSensor (depth 0 on roots/scopes)' : 'naive chokidar, unlimited depth';
    line(label, r, r.after);
    if (r.afterRescans) line('InstallSensor after 5 more full rescans', r, r.afterRescans);
  }
  console.log(
    '(fds include the inotify fd, SQLite files and stdio; Δheap = V8 heap in use; ΔRSS includes V8 heap reservation)',
  );
  const s = runs.find((r) => r.kind === 'sensor');
  console.log(
    `full rescan of ${VERSIONS * PACKAGES_PER_VERSION} packages (reads every package.json): ${fmt(s.rescanMs)} ms`,
  );
}

if (process.argv[2] === '--child') {
  await child(process.argv[3], process.argv[4], process.argv[5]);
} else {
  const dir = mkdtempSync(join(tmpdir(), 'tgib-'));
  try {
    await latencyBench(join(dir, 'latency'));
    await handlesBench(join(dir, 'handles'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
