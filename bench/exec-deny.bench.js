// Pre-exec deny overhead (Linux, root): the wall time of one exec of /bin/true, run 2,000 times in
// a shell loop, and of one exec each of 200 fresh copies (every one a verdict-cache miss that the
// JS side decides), measured in the same run for:
//   - no enforcer;
//   - guardd with pre-exec deny off (the /proc polling sensor only);
//   - guardd with pre-exec deny on (fanotify FAN_OPEN_EXEC_PERM), with the example ban list plus a
//     sha256 rule (so a new file is also hashed), none of which matches /bin/true;
//   - fapolicyd (Debian package, `trust = file`, one deny rule) when it is installed and
//     TOOLGUARD_BENCH_FAPOLICYD=1: started in the foreground for its measurement, stopped after.
//     The bench never installs it; see docs/process-detection.md for the command used.
// Each figure is the median of 3 rounds. Then the exec load of a busy machine — two C loops of
// fork + exec + wait of /bin/true (test/fixtures/native/execloop.c) for LOAD_S seconds — run with
// no enforcer (the ceiling), and with guardd's pre-exec deny SIGKILLed after a third of it and
// started again: execs/s reached, the slowest exec, and how many were refused (none may be).
// Prints measured numbers only; skips (and says so) when not root on Linux or when the execperm
// addon is not built.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callDaemon } from '../dist/control/control-client.js';
import { EXECPERM_ADDON_PATH } from '../dist/enforcement/exec-deny.js';
import { generateKeyPair } from '../dist/policy/keys.js';
import { spawnGuardd, waitForStatus, writeGuarddFiles } from './lib/bench-guardd.js';
import { syntheticPolicyBody } from './lib/synthetic-policy.js';

const EXECS = 2000;
const FRESH = 200;
const ROUNDS = 3;
const LOAD_S = 6;
const LOAD_LOOPS = 2;

if (process.platform !== 'linux' || process.getuid?.() !== 0 || !existsSync(EXECPERM_ADDON_PATH)) {
  process.stdout.write(
    `exec-deny bench skipped: needs root on Linux and ${EXECPERM_ADDON_PATH} (npm run build)\n`,
  );
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), 'tgdn-bench-'));
const TRUE = '/bin/true';
const freshDir = join(dir, 'fresh');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** µs per exec of /bin/true in a dash loop. */
function loopUs() {
  const t0 = performance.now();
  const r = spawnSync('sh', ['-c', `i=0; while [ $i -lt ${EXECS} ]; do ${TRUE}; i=$((i+1)); done`]);
  if (r.status !== 0) throw new Error(`loop failed: ${r.stderr}`);
  return ((performance.now() - t0) * 1000) / EXECS;
}

/** µs per exec of a file never exec'd before (new copies each round: a cache miss every time). */
function freshUs(round) {
  const d = join(freshDir, String(round));
  mkdirSync(d, { recursive: true });
  for (let i = 0; i < FRESH; i++) {
    const p = join(d, `t${i}`);
    copyFileSync(TRUE, p);
    chmodSync(p, 0o755);
  }
  const t0 = performance.now();
  const r = spawnSync('sh', ['-c', `for f in ${d}/t*; do "$f"; done`]);
  if (r.status !== 0) throw new Error(`fresh loop failed: ${r.stderr}`);
  return ((performance.now() - t0) * 1000) / FRESH;
}

let round = 0;
function measure() {
  const loop = [];
  const fresh = [];
  for (let i = 0; i < ROUNDS; i++) {
    loop.push(loopUs());
    fresh.push(freshUs(round++));
  }
  return { loop: median(loop), fresh: median(fresh) };
}

async function withGuardd(label, execDeny, fn) {
  const sub = join(dir, label);
  mkdirSync(sub);
  const key = generateKeyPair();
  const example = JSON.parse(readFileSync(new URL('../policy/example-policy.json', import.meta.url), 'utf8'));
  const hashRule = {
    id: 'bench-hash',
    name: 'bench hash',
    action: 'block',
    message: 'bench',
    process: { sha256: [createHash('sha256').update('not a real program').digest('hex')] },
  };
  const body = syntheticPolicyBody([...example.rules, hashRule]);
  const { configFile, socketDir } = writeGuarddFiles(sub, body, key, { 'enforcement.exec_deny': execDeny });
  const guardd = spawnGuardd(configFile);
  const sock = join(socketDir, 'guardd.sock');
  try {
    const s = await waitForStatus(guardd, socketDir, (st) => Boolean(st.policy?.version), 60_000);
    if (execDeny === 'auto' && s.exec_deny?.state !== 'on')
      throw new Error(`pre-exec deny did not start: ${s.exec_deny?.reason}`);
    const out = fn();
    const after = await callDaemon(sock, 'status', {}, 5000);
    return { ...out, counters: after.exec_deny?.counters ?? null };
  } finally {
    guardd.kill('SIGTERM');
    await new Promise((r) => (guardd.exitCode !== null ? r() : guardd.once('exit', r)));
  }
}

async function withFapolicyd(fn) {
  if (process.env.TOOLGUARD_BENCH_FAPOLICYD !== '1')
    return { skipped: 'set TOOLGUARD_BENCH_FAPOLICYD=1 to measure' };
  if (spawnSync('sh', ['-c', 'command -v fapolicyd']).status !== 0)
    return { skipped: 'fapolicyd not installed' };
  if (spawnSync('systemctl', ['is-active', '--quiet', 'fapolicyd']).status === 0)
    return { skipped: 'fapolicyd already running (not touched)' };
  const rulesDir = '/etc/fapolicyd/rules.d';
  const conf = '/etc/fapolicyd/fapolicyd.conf';
  const saved = new Map();
  const compiled = '/etc/fapolicyd/compiled.rules';
  const hadCompiled = existsSync(compiled);
  if (hadCompiled) saved.set(compiled, readFileSync(compiled));
  for (const f of [
    conf,
    ...(existsSync(rulesDir)
      ? spawnSync('ls', [rulesDir], { encoding: 'utf8' })
          .stdout.split('\n')
          .filter(Boolean)
          .map((n) => join(rulesDir, n))
      : []),
  ]) {
    saved.set(f, readFileSync(f));
  }
  const bannedPath = join(dir, 'fapolicyd-banned');
  copyFileSync(TRUE, bannedPath);
  chmodSync(bannedPath, 0o755);
  try {
    for (const f of saved.keys()) if (f.startsWith(rulesDir)) rmSync(f);
    mkdirSync(rulesDir, { recursive: true });
    writeFileSync(
      join(rulesDir, '10-bench.rules'),
      `deny perm=execute all : path=${bannedPath}\nallow perm=any all : all\n`,
    );
    writeFileSync(
      conf,
      readFileSync(conf, 'utf8')
        .replace(/^trust\s*=.*$/m, 'trust = file')
        // Its own uid when it can drop to it; in containers without setuid it runs as root.
        .replace(/^uid\s*=.*$/m, `uid = ${process.env.TOOLGUARD_BENCH_FAPOLICYD_UID ?? 'fapolicyd'}`)
        .replace(/^gid\s*=.*$/m, `gid = ${process.env.TOOLGUARD_BENCH_FAPOLICYD_UID ?? 'fapolicyd'}`),
    );
    spawnSync('fagenrules', ['--load']);
    const fa = spawn('fapolicyd', ['--debug-deny'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    fa.stderr.on('data', (d) => {
      err += d;
    });
    try {
      // Ready when the banned file is refused.
      const deadline = Date.now() + 60_000;
      while (spawnSync(bannedPath).status === 0) {
        if (fa.exitCode !== null) throw new Error(`fapolicyd exited: ${err.slice(-500)}`);
        if (Date.now() > deadline) throw new Error('fapolicyd did not start denying');
        await sleep(200);
      }
      return fn();
    } finally {
      fa.kill('SIGTERM');
      // fapolicyd answers every open on the machine while it runs: never leave it behind.
      const kill = setTimeout(() => fa.kill('SIGKILL'), 5000);
      await new Promise((r) => (fa.exitCode !== null ? r() : fa.once('exit', r)));
      clearTimeout(kill);
    }
  } finally {
    rmSync(join(rulesDir, '10-bench.rules'), { force: true });
    for (const [f, data] of saved) writeFileSync(f, data);
    if (!hadCompiled) rmSync(compiled, { force: true });
  }
}

/** Starts LOAD_LOOPS exec loops of /bin/true; `stop()` ends them and sums what they report. */
function execLoad(execloop, stopFile) {
  rmSync(stopFile, { force: true });
  const started = performance.now();
  const loops = Array.from({ length: LOAD_LOOPS }, () => {
    const p = spawn(execloop, [TRUE, stopFile], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    p.stdout.on('data', (d) => {
      text += d;
    });
    return new Promise((res) => p.once('close', () => res(text.trim().split(' ').map(Number))));
  });
  return {
    async stop() {
      writeFileSync(stopFile, '');
      const out = await Promise.all(loops);
      const secs = (performance.now() - started) / 1000;
      return {
        perS: out.reduce((a, [n]) => a + n, 0) / secs,
        worstMs: Math.max(...out.map(([, , w]) => w)),
        failed: out.reduce((a, [, , , f]) => a + f, 0),
      };
    },
  };
}

/** The exec load alone, then under guardd (pre-exec deny on) SIGKILLed at a third and restarted. */
async function killUnderLoad() {
  const execloop = join(dir, 'execloop');
  const cc = spawnSync('gcc', [
    '-O2',
    '-o',
    execloop,
    new URL('../test/fixtures/native/execloop.c', import.meta.url).pathname,
  ]);
  if (cc.status !== 0) return { skipped: `gcc failed: ${cc.stderr}` };
  const stopFile = join(dir, 'load-stop');
  const alone = execLoad(execloop, stopFile);
  await sleep(LOAD_S * 1000);
  const ceiling = await alone.stop();

  const sub = join(dir, 'killed');
  mkdirSync(sub);
  const key = generateKeyPair();
  const body = syntheticPolicyBody(
    JSON.parse(readFileSync(new URL('../policy/example-policy.json', import.meta.url), 'utf8')).rules,
  );
  const { configFile, socketDir } = writeGuarddFiles(sub, body, key, { 'enforcement.exec_deny': 'auto' });
  const ready = (st) => st.exec_deny?.state === 'on';
  let guardd = spawnGuardd(configFile);
  await waitForStatus(guardd, socketDir, ready, 60_000);
  const load = execLoad(execloop, stopFile);
  await sleep((LOAD_S * 1000) / 3);
  guardd.kill('SIGKILL');
  await new Promise((r) =>
    guardd.exitCode !== null || guardd.signalCode !== null ? r() : guardd.once('exit', r),
  );
  const restartAt = performance.now();
  guardd = spawnGuardd(configFile);
  try {
    await waitForStatus(guardd, socketDir, ready, 60_000);
    const restartMs = performance.now() - restartAt;
    await sleep((LOAD_S * 1000) / 3);
    const killed = await load.stop();
    return { ceiling, killed, restartMs };
  } finally {
    guardd.kill('SIGTERM');
    await new Promise((r) => (guardd.exitCode !== null ? r() : guardd.once('exit', r)));
  }
}

try {
  const rows = [];
  rows.push(['no enforcer', measure(), null]);
  const off = await withGuardd('off', 'off', measure);
  rows.push(['guardd, pre-exec deny off (polling)', off, null]);
  const on = await withGuardd('on', 'auto', measure);
  rows.push(['guardd, pre-exec deny on', on, on.counters]);
  const fa = await withFapolicyd(measure);
  if (!fa.skipped) rows.push(['fapolicyd (trust = file, 1 deny rule)', fa, null]);

  const base = rows[0][1];
  process.stdout.write(
    `\nPer-exec wall time (median of ${ROUNDS}); cached = /bin/true x${EXECS} in a dash loop, fresh = ${FRESH} new copies (a verdict-cache miss each)\n`,
  );
  process.stdout.write(
    `${'setup'.padEnd(40)} ${'cached µs'.padStart(10)} ${'overhead'.padStart(9)} ${'fresh µs'.padStart(10)} ${'overhead'.padStart(9)}\n`,
  );
  for (const [label, m] of rows) {
    process.stdout.write(
      `${label.padEnd(40)} ${m.loop.toFixed(1).padStart(10)} ${(m.loop - base.loop).toFixed(1).padStart(9)} ${m.fresh.toFixed(1).padStart(10)} ${(m.fresh - base.fresh).toFixed(1).padStart(9)}\n`,
    );
  }
  if (fa.skipped) process.stdout.write(`fapolicyd: not measured (${fa.skipped})\n`);
  const c = on.counters;
  if (c)
    process.stdout.write(
      `guardd pre-exec counters: ${c.events} requests, ${c.cache_hits} cache hits (${((c.cache_hits / Math.max(1, c.events)) * 100).toFixed(1)}%), ${c.posted} decided in JS, ${c.deadline_misses} deadline misses, ${c.overflow} overflows\n`,
    );
  const k = await killUnderLoad();
  if (k.skipped) process.stdout.write(`\nexec load with guardd SIGKILLed: not measured (${k.skipped})\n`);
  else {
    process.stdout.write(
      `\nExec load: ${LOAD_LOOPS} C loops of fork+exec+wait of /bin/true for ${LOAD_S} s (test/fixtures/native/execloop.c)\n`,
    );
    process.stdout.write(
      `${'setup'.padEnd(52)} ${'execs/s'.padStart(8)} ${'slowest ms'.padStart(11)} ${'refused'.padStart(8)}\n`,
    );
    for (const [label, r] of [
      ['no enforcer (ceiling)', k.ceiling],
      ['guardd pre-exec deny, SIGKILLed and restarted', k.killed],
    ])
      process.stdout.write(
        `${label.padEnd(52)} ${r.perS.toFixed(0).padStart(8)} ${r.worstMs.toFixed(1).padStart(11)} ${String(r.failed).padStart(8)}\n`,
      );
    process.stdout.write(
      `guardd SIGKILLed ${LOAD_S / 3} s into the load and started again at once: pre-exec deny on again ${(k.restartMs / 1000).toFixed(1)} s later\n`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
