/**
 * Process sensor benchmark (issue 4), Linux. Needs `npm run build` first (imports ../dist).
 *
 * With ~300 processes present, measures side by side:
 *  - launch→kill latency of a banned binary (≥ 200 launches) with the procfs source at 100 ms, the
 *    ps-list source at the same interval, and a `while :; do pkill -x NAME; sleep 1; done` loop;
 *  - CPU (% of one core) of each approach at idle and with 50 unrelated launches/s (launched by a
 *    separate load process, so the load itself is not counted);
 *  - the fraction of processes living 20/50/100 ms that the procfs sensor sees at its default interval;
 *  - matcher cost per new process with a generated 1,000-rule policy (µs).
 * Every number printed is measured in this run. Exits 0; takes about 2–3 minutes.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  copyFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../dist/common/logger.js';
import { BlockProcessAction } from '../dist/enforcement/actions/block-process.js';
import { NotifyProcessAction } from '../dist/enforcement/actions/notify-process.js';
import { Enforcer } from '../dist/enforcement/enforcer.js';
import { SessionNotifier } from '../dist/enforcement/notify/session-notifier.js';
import { compileMatcher } from '../dist/policy/matcher.js';
import { ProcessSensor } from '../dist/sensors/process-sensor.js';
import { ProcfsSource } from '../dist/sensors/process-sources/procfs-source.js';
import { PsListSource } from '../dist/sensors/process-sources/pslist-source.js';

if (process.platform !== 'linux') {
  console.log('process.bench: Linux only (procfs source); skipped on', process.platform);
  process.exit(0);
}

const TARGET_PROCESSES = 300;
const INTERVAL_MS = 100;
const LAUNCHES = 200;
const PSLIST_LAUNCHES = 50;
const PKILL_LAUNCHES = 20;
const CPU_WINDOW_MS = 8000;
const LOAD_PER_S = 50;
const SHORT_LIVED_EACH = 100;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

const logger = silentLogger();
const dir = mkdtempSync(join(tmpdir(), 'tg-pbench-'));
const children = new Set();
const track = (c) => {
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
};
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const sleepMs = (ms) => new Promise((r) => setTimeout(r, ms));
const sleepBin = execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim();

// The banned binary: a copy of sleep whose hash and name are unique to this run.
const tool = `tgbench${randomBytes(3).toString('hex')}`;
const banned = join(dir, tool);
copyFileSync(sleepBin, banned);
appendFileSync(banned, randomBytes(32));
chmodSync(banned, 0o755);
const sha = createHash('sha256').update(readFileSync(banned)).digest('hex');
const rule = {
  id: 'bench',
  name: 'Bench Tool',
  action: 'block',
  message: 'bench',
  process: { names: [tool], sha256: [sha] },
};
const body = {
  schema: 'toolguard.policy/v1',
  version: 1,
  issued_at: '2026-01-01T00:00:00Z',
  expires_at: '2099-01-01T00:00:00Z',
  mode: 'enforce',
  rules: [rule],
};

function countProcesses() {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).length;
}

/** utime+stime (self) and cutime+cstime (reaped children) of a pid, in clock ticks. */
function cpuTicks(pid = 'self') {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return { self: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) };
}

function pct(ticks, ms) {
  return ((ticks / CLK_TCK) * 1000 * 100) / ms;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function stats(values) {
  const s = [...values].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: percentile(s, 50),
    p95: percentile(s, 95),
    p99: percentile(s, 99),
    max: s.at(-1),
  };
}

const fmt = (v, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : '-');

function table(title, header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join('  ');
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

/** Starts the real pipeline (sensor → matcher → enforcer → block action) on a source. */
async function startPipeline(source, observe) {
  const notifier = new SessionNotifier({ logger, platform: 'linux', terminal: true, desktop: false });
  const events = { emit: () => null };
  const enforcer = new Enforcer({
    actions: {
      blockProcess: new BlockProcessAction({ notifier, logger }),
      notifyProcess: new NotifyProcessAction({ notifier, logger }),
      quarantine: { execute: async () => ({ actionTaken: 'skipped', latencyMs: 0, error: null }) },
      notifyInstall: { execute: async () => ({ actionTaken: 'skipped', latencyMs: 0, error: null }) },
    },
    events,
    logger,
    warnIntervalMs: 0,
  });
  const matcher = compileMatcher(body, { platform: 'linux', homes: [] });
  const ctx = { now: Date.now(), hostname: 'bench', deviceTags: [] };
  const sensor = new ProcessSensor({
    source,
    users: { owner: (uid) => ({ uid, user: null, groups: [], home: null }) },
    intervalMs: INTERVAL_MS,
    logger,
    onObservation: async (obs) => {
      observe?.(obs);
      const d = matcher.match(obs, ctx);
      if (d) await enforcer.handle(obs, d);
    },
  });
  sensor.setMatcher(matcher);
  await sensor.start();
  return sensor;
}

/** Launches the banned binary `n` times (one at a time, random phase) and returns launch→exit latencies. */
async function measureLatency(n, deadlineMs) {
  const out = [];
  let missed = 0;
  for (let i = 0; i < n; i++) {
    await sleepMs(Math.random() * INTERVAL_MS);
    const t0 = performance.now();
    const c = track(spawn(banned, ['30'], { stdio: 'ignore' }));
    const ended = await Promise.race([
      new Promise((r) => c.once('exit', (_code, signal) => r(signal))),
      sleepMs(deadlineMs).then(() => 'timeout'),
    ]);
    // Any signal counts as stopped (the pkill loop sends SIGTERM); exiting on its own or the deadline does not.
    if (typeof ended === 'string' && ended.startsWith('SIG')) out.push(performance.now() - t0);
    else {
      missed++;
      c.kill('SIGKILL');
    }
  }
  return { ...stats(out), missed };
}

/** A separate process that starts LOAD_PER_S unrelated short `sleep 0.3` processes per second. */
function startLoad() {
  const code = `const {spawn}=require('node:child_process');setInterval(()=>spawn('sleep',['0.3'],{stdio:'ignore'}),${1000 / LOAD_PER_S});`;
  return track(spawn(process.execPath, ['-e', code], { stdio: 'ignore' }));
}

async function stopChild(c) {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const done = new Promise((r) => c.once('exit', r));
  c.kill('SIGKILL');
  await done;
}

/** What the sensor did in a window: new processes observed, executables hashed (context for CPU). */
function work(sensor) {
  if (!sensor) return { observed: 0, hashed: 0 };
  const d = sensor.status().details;
  return { observed: d.observed, hashed: d.hash?.hashed ?? 0 };
}

/** CPU % of one core used by this process (self, and reaped children such as ps) over a window. */
async function measureCpu(ms, pid = 'self', sensor = null) {
  const w0 = work(sensor);
  const a = cpuTicks(pid);
  const u0 = pid === 'self' ? process.cpuUsage() : null;
  const t0 = performance.now();
  await sleepMs(ms);
  const elapsed = performance.now() - t0;
  const b = cpuTicks(pid);
  const used = u0 ? process.cpuUsage(u0) : null;
  const self = used ? (used.user + used.system) / 1000 : null;
  const w1 = work(sensor);
  return {
    observed: w1.observed - w0.observed,
    hashed: w1.hashed - w0.hashed,
    self: self !== null ? (self / elapsed) * 100 : pct(b.self - a.self, elapsed),
    children: pct(b.children - a.children, elapsed),
  };
}

// --- setup: reach ~300 processes --------------------------------------------------------------
const before = countProcesses();
const idle = [];
for (let i = before; i < TARGET_PROCESSES; i++)
  idle.push(track(spawn(sleepBin, ['600'], { stdio: 'ignore' })));
await sleepMs(300);
const present = countProcesses();
console.log(
  `process.bench: ${present} processes present (${idle.length} idle sleeps added), interval ${INTERVAL_MS} ms, CLK_TCK ${CLK_TCK}`,
);

// --- baseline: this node process with no sensor ---------------------------------------------
const baseline = await measureCpu(4000);

// --- procfs source ---------------------------------------------------------------------------
const results = {};
{
  const sensor = await startPipeline(new ProcfsSource());
  const lat = await measureLatency(LAUNCHES, 3000);
  const cpuIdle = await measureCpu(CPU_WINDOW_MS, 'self', sensor);
  const load = startLoad();
  await sleepMs(500);
  const cpuLoad = await measureCpu(CPU_WINDOW_MS, 'self', sensor);
  await stopChild(load);
  const st = sensor.status();
  await sensor.stop();
  results.procfs = { lat, cpuIdle, cpuLoad, st };
}

// --- ps-list source at the same interval ----------------------------------------------------
{
  const sensor = await startPipeline(new PsListSource());
  const lat = await measureLatency(PSLIST_LAUNCHES, 5000);
  const cpuIdle = await measureCpu(CPU_WINDOW_MS, 'self', sensor);
  const load = startLoad();
  await sleepMs(500);
  const cpuLoad = await measureCpu(CPU_WINDOW_MS, 'self', sensor);
  await stopChild(load);
  await sensor.stop();
  results.pslist = { lat, cpuIdle, cpuLoad };
}

// --- pkill loop ------------------------------------------------------------------------------
{
  const loop = track(
    spawn('sh', ['-c', `while :; do pkill -x ${tool.slice(0, 15)}; sleep 1; done`], { stdio: 'ignore' }),
  );
  await sleepMs(200);
  const lat = await measureLatency(PKILL_LAUNCHES, 3000);
  const cpuIdle = await measureCpu(CPU_WINDOW_MS, loop.pid);
  const load = startLoad();
  await sleepMs(500);
  const cpuLoad = await measureCpu(CPU_WINDOW_MS, loop.pid);
  await stopChild(load);
  await stopChild(loop);
  results.pkill = { lat, cpuIdle, cpuLoad };
}

// --- short-lived processes seen at the default interval -------------------------------------
const seenAsSleep = new Set();
const shortRows = [];
{
  const sensor = await startPipeline(new ProcfsSource(), (obs) => {
    if (obs.name === 'sleep') seenAsSleep.add(obs.pid);
  });
  for (const lifeMs of [20, 50, 100]) {
    const pids = [];
    const exits = [];
    for (let i = 0; i < SHORT_LIVED_EACH; i++) {
      await sleepMs(Math.random() * 40);
      const c = track(spawn(sleepBin, [String(lifeMs / 1000)], { stdio: 'ignore' }));
      pids.push(c.pid);
      exits.push(new Promise((r) => c.once('exit', r)));
    }
    await Promise.all(exits);
    await sensor.runTick();
    const seen = pids.filter((p) => seenAsSleep.has(p)).length;
    shortRows.push([`${lifeMs} ms`, SHORT_LIVED_EACH, seen, `${fmt((seen / SHORT_LIVED_EACH) * 100, 0)} %`]);
  }
  await sensor.stop();
}

// --- matcher cost with 1,000 rules ----------------------------------------------------------
const matcherRows = [];
{
  const rules = [];
  for (let i = 0; i < 1000; i++) {
    const k = i % 4;
    rules.push({
      id: `r${i}`,
      name: `Rule ${i}`,
      action: i % 3 === 0 ? 'block' : i % 3 === 1 ? 'warn' : 'audit',
      message: 'm',
      process: {
        names: [`tool-${i}`, `tool-${i}-alt`],
        ...(k === 0 ? { exe_globs: [`**/node_modules/@vendor${i}/cli*/**`] } : {}),
        ...(k === 1 ? { argv_patterns: [`--model[= ]secret-${i}\\b`] } : {}),
        ...(k === 2 ? { script_packages: [`@vendor${i}/cli`] } : {}),
        ...(k === 3 ? { sha256: [createHash('sha256').update(String(i)).digest('hex')] } : {}),
      },
    });
  }
  const m = compileMatcher({ ...body, rules }, { platform: 'linux', homes: [] });
  const ctx = { now: Date.now(), hostname: 'bench', deviceTags: [] };
  const owner = { uid: 1000, user: 'dev', groups: ['dev'], home: '/home/dev' };
  const mk = (o) => ({
    kind: 'process',
    pid: 4242,
    ppid: 1,
    startTime: 1,
    name: 'node',
    exe: '/usr/bin/node',
    argv: ['node', '/home/dev/project/server.js', '--port', '8080'],
    owner,
    tty: '/dev/pts/1',
    sha256: 'a'.repeat(64),
    scriptPackage: {
      name: 'my-app',
      version: '1.0.0',
      root: '/home/dev/project',
      script: '/home/dev/project/server.js',
    },
    ...o,
  });
  const cases = [
    ['unrelated node script (no match)', mk({})],
    [
      'unrelated binary, long argv (no match)',
      mk({
        name: 'gcc',
        exe: '/usr/bin/gcc',
        argv: ['gcc', ...Array(200).fill('-Wall')],
        scriptPackage: null,
      }),
    ],
    ['matches the last rule by name', mk({ name: 'tool-999' })],
    [
      'matches by script package',
      mk({ scriptPackage: { name: '@vendor998/cli', version: '1', root: '/x', script: '/x/cli.js' } }),
    ],
  ];
  for (const [label, obs] of cases) {
    for (let i = 0; i < 200; i++) m.match(obs, ctx); // warm up
    const n = 2000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) m.match(obs, ctx);
    const us = ((performance.now() - t0) * 1000) / n;
    matcherRows.push([label, fmt(us, 1)]);
  }
}

// --- report ----------------------------------------------------------------------------------
for (const c of idle) c.kill('SIGKILL');
const r = results;
table(
  `Launch → kill latency (ms), banned binary, ${present} processes present, interval ${INTERVAL_MS} ms`,
  ['approach', 'launches', 'killed', 'p50', 'p95', 'p99', 'max'],
  [
    [
      'procfs sensor',
      LAUNCHES,
      r.procfs.lat.n,
      fmt(r.procfs.lat.p50),
      fmt(r.procfs.lat.p95),
      fmt(r.procfs.lat.p99),
      fmt(r.procfs.lat.max),
    ],
    [
      'ps-list sensor',
      PSLIST_LAUNCHES,
      r.pslist.lat.n,
      fmt(r.pslist.lat.p50),
      fmt(r.pslist.lat.p95),
      fmt(r.pslist.lat.p99),
      fmt(r.pslist.lat.max),
    ],
    [
      'pkill loop (1 s)',
      PKILL_LAUNCHES,
      r.pkill.lat.n,
      fmt(r.pkill.lat.p50),
      fmt(r.pkill.lat.p95),
      fmt(r.pkill.lat.p99),
      fmt(r.pkill.lat.max),
    ],
  ],
);
table(
  `CPU, % of one core (self = the sensor's process; children = reaped helpers such as ps / pkill), ${LOAD_PER_S} launches/s under load`,
  [
    'approach',
    'idle self',
    'idle children',
    'idle total',
    'load self',
    'load children',
    'load total',
    'new procs seen idle/load',
    'exes hashed idle/load',
  ],
  [
    [
      'no sensor (baseline)',
      fmt(baseline.self, 2),
      fmt(baseline.children, 2),
      fmt(baseline.self + baseline.children, 2),
      '-',
      '-',
      '-',
      '-',
      '-',
    ],
    ...[
      ['procfs sensor', r.procfs],
      ['ps-list sensor', r.pslist],
      ['pkill loop (1 s)', r.pkill],
    ].map(([n, x]) => [
      n,
      fmt(x.cpuIdle.self, 2),
      fmt(x.cpuIdle.children, 2),
      fmt(x.cpuIdle.self + x.cpuIdle.children, 2),
      fmt(x.cpuLoad.self, 2),
      fmt(x.cpuLoad.children, 2),
      fmt(x.cpuLoad.self + x.cpuLoad.children, 2),
      n === 'pkill loop (1 s)' ? '-' : `${x.cpuIdle.observed}/${x.cpuLoad.observed}`,
      n === 'pkill loop (1 s)' ? '-' : `${x.cpuIdle.hashed}/${x.cpuLoad.hashed}`,
    ]),
  ],
);
table(
  `Short-lived processes seen by the procfs sensor at ${INTERVAL_MS} ms`,
  ['lifetime', 'launched', 'seen', 'fraction'],
  shortRows,
);
table(
  'Matcher cost per new process, 1,000-rule policy (µs, mean of 2,000)',
  ['observation', 'µs'],
  matcherRows,
);
const d = r.procfs.st.details;
console.log(
  `\nprocfs sensor: ${d.ticks} ticks; /proc listed and parsed ${d.listings}×, listed but unchanged ${d.unchanged_listings}×, not listed (loadavg shortcut) ${d.shortcuts}×; max tick ${d.max_tick_ms} ms; skipped ${JSON.stringify(r.procfs.st.skipped)}`,
);
process.exit(0);
