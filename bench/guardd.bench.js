// Whole-daemon benchmark: a real guardd (from dist/, default 100 ms /proc interval, install sensor
// off) with a signed policy holding a rule for a copy of `sleep` under a banned name, measured for
// three set-ups in the same run:
//   - the example ban list (policy/example-policy.json) + the bench rule, started as the systemd
//     unit starts it (the node flags of service/linux/toolguard.service's ExecStart: the heap cap);
//   - a synthetic 1,000-rule policy (bench/lib/synthetic-policy.js) + the bench rule, same flags;
//   - the same 1,000-rule policy without those flags (how guardd ran before the heap cap).
// For each: RSS and CPU (utime+stime from /proc/<pid>/stat) at idle, during 50 sequential launches
// (launch→kill latency measured from spawn() to the child's exit by SIGKILL) and during launches
// at 50/s; the peak RSS (VmHWM) over the whole run. Prints measured numbers only.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '../dist/policy/keys.js';
import { spawnGuardd, waitForStatus, writeGuarddFiles } from './lib/bench-guardd.js';
import { syntheticPolicyBody, syntheticRules } from './lib/synthetic-policy.js';

const LAUNCHES = 50;
/** Launch rate of the sustained phase, per second, and how long it lasts (ms). */
const RATE_PER_S = 50;
const RATE_PHASE_MS = 5000;
const IDLE_MS = 5000;
const BANNED = 'tg-bench-banned';
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

const unit = readFileSync(new URL('../service/linux/toolguard.service', import.meta.url), 'utf8');
const execWords = (/^ExecStart=\S+\s+(.*)$/m.exec(unit)?.[1] ?? '').split(/\s+/);
const UNIT_NODE_ARGS = execWords.slice(
  0,
  Math.max(
    0,
    execWords.findIndex((w) => w.endsWith('/bin/guardd.js')),
  ),
);
const MEMORY_MAX = /^MemoryMax=(.*)$/m.exec(unit)?.[1] ?? '?';

const dir = mkdtempSync(join(tmpdir(), 'tgb-'));
const key = generateKeyPair();
const exe = join(dir, BANNED);
copyFileSync(spawnSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim(), exe);
chmodSync(exe, 0o755);

const benchRule = {
  id: 'bench',
  name: 'Bench banned tool',
  action: 'block',
  message: 'bench',
  process: { names: [BANNED] },
};
const example = JSON.parse(readFileSync(new URL('../policy/example-policy.json', import.meta.url), 'utf8'));

function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, fields 14 and 15
}
function memMiB(pid, field) {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** CPU % of one core used by `pid` while `fn` runs. */
async function cpuDuring(pid, fn) {
  const t0 = cpuTicks(pid);
  const w0 = performance.now();
  const out = await fn();
  return { cpu: ((cpuTicks(pid) - t0) / CLK_TCK / ((performance.now() - w0) / 1000)) * 100, out };
}

function launch() {
  const child = spawn(exe, ['30'], { stdio: 'ignore' });
  return new Promise((res) => child.once('exit', (_code, sig) => res(sig)));
}

async function scenario(label, rules, nodeArgs) {
  const sub = join(dir, label.replace(/\W+/g, '-'));
  mkdirSync(sub);
  const now = Date.now();
  const body = syntheticPolicyBody(rules, { now });
  const { configFile, socketDir } = writeGuarddFiles(sub, body, key, {
    // This bench measures the post-exec kill; pre-exec deny has bench/exec-deny.bench.js.
    'enforcement.exec_deny': 'off',
  });
  const started = performance.now();
  const guardd = spawnGuardd(configFile, nodeArgs);
  try {
    await waitForStatus(guardd, socketDir, (st) => st.policy?.rules === rules.length, 180_000);
    const startMs = performance.now() - started;
    const startHwm = memMiB(guardd.pid, 'VmHWM');
    const idle = await cpuDuring(guardd.pid, () => sleep(IDLE_MS));
    const idleRss = memMiB(guardd.pid, 'VmRSS');

    const latencies = [];
    let notKilled = 0;
    const seq = await cpuDuring(guardd.pid, async () => {
      for (let i = 0; i < LAUNCHES; i++) {
        // A random pause first: launches right after a kill would all land at the same phase of
        // the scan interval and measure that phase instead of the real distribution.
        await sleep(Math.random() * 150);
        const t = performance.now();
        if ((await launch()) !== 'SIGKILL') notKilled++;
        latencies.push(performance.now() - t);
      }
    });
    const seqRss = memMiB(guardd.pid, 'VmRSS');
    latencies.sort((a, b) => a - b);

    let rateNotKilled = 0;
    let rateLaunches = 0;
    const rate = await cpuDuring(guardd.pid, async () => {
      const exits = [];
      const t0 = performance.now();
      for (let i = 0; performance.now() - t0 < RATE_PHASE_MS; i++) {
        exits.push(launch().then((sig) => sig !== 'SIGKILL' && rateNotKilled++));
        rateLaunches++;
        await sleep(Math.max(0, t0 + ((i + 1) * 1000) / RATE_PER_S - performance.now()));
      }
      await Promise.all(exits);
    });
    const rateRss = memMiB(guardd.pid, 'VmRSS');
    return {
      label,
      startMs,
      startHwm,
      idle: { cpu: idle.cpu, rss: idleRss },
      seq: { cpu: seq.cpu, rss: seqRss, latencies, notKilled },
      rate: { cpu: rate.cpu, rss: rateRss, launches: rateLaunches, notKilled: rateNotKilled },
      hwm: memMiB(guardd.pid, 'VmHWM'),
    };
  } finally {
    guardd.kill('SIGTERM');
    await new Promise((r) => guardd.once('exit', r));
  }
}

const procCount = spawnSync('sh', ['-c', 'ls -d /proc/[0-9]* | wc -l'], { encoding: 'utf8' }).stdout.trim();
const capped = UNIT_NODE_ARGS.join(' ') || '(none)';
const results = [];
try {
  results.push(
    await scenario(
      `example (${example.rules.length + 1} rules), ${capped}`,
      [...example.rules, benchRule],
      UNIT_NODE_ARGS,
    ),
  );
  // 999 + the bench rule: the schema's maximum of 1,000 rules
  const large = [...syntheticRules(999), benchRule];
  results.push(await scenario(`1,000 rules, ${capped}`, large, UNIT_NODE_ARGS));
  results.push(await scenario('1,000 rules, no heap cap (before)', large, []));
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const r1 = (n) => +n.toFixed(1);
console.log(
  `guardd, default interval, install sensor off, ${procCount} processes on the machine; unit: MemoryMax=${MEMORY_MAX}, node ${capped}`,
);
console.table(
  Object.fromEntries(
    results.map((r) => [
      r.label,
      {
        'p50 ms': r1(pct(r.seq.latencies, 50)),
        'p95 ms': r1(pct(r.seq.latencies, 95)),
        'p99 ms': r1(pct(r.seq.latencies, 99)),
        'max ms': r1(r.seq.latencies.at(-1)),
        'not killed': r.seq.notKilled,
      },
    ]),
  ),
);
console.log('launch→kill latency above (50 sequential launches); memory and CPU (% of one core) below');
console.table(
  Object.fromEntries(
    results.map((r) => [
      r.label,
      {
        'ready s': r1(r.startMs / 1000),
        'peak RSS at ready MiB': r1(r.startHwm),
        'idle CPU %': +r.idle.cpu.toFixed(2),
        'idle RSS MiB': r1(r.idle.rss),
        'sequential CPU %': +r.seq.cpu.toFixed(2),
        [`${RATE_PER_S}/s CPU %`]: +r.rate.cpu.toFixed(2),
        [`${RATE_PER_S}/s RSS MiB`]: r1(r.rate.rss),
        [`${RATE_PER_S}/s not killed`]: `${r.rate.notKilled}/${r.rate.launches}`,
        'peak RSS MiB': r1(r.hwm),
      },
    ]),
  ),
);
