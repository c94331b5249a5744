// Whole-daemon benchmark: a real guardd (from dist/, default 100 ms /proc interval) with a signed
// one-rule policy; a copy of `sleep` under the banned name is launched 50 times, one after the
// other with a random pause, and launch→kill latency is measured from spawn() to the child's exit by SIGKILL.
// guardd's CPU (utime+stime from /proc/<pid>/stat) and RSS are read at idle and during the run.
// Prints measured numbers only.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callDaemon } from '../dist/control/control-client.js';
import { signEnvelope } from '../dist/policy/dsse.js';
import { generateKeyPair, parsePrivateKey } from '../dist/policy/keys.js';
import { POLICY_PAYLOAD_TYPE } from '../dist/policy/policy-types.js';

const LAUNCHES = 50;
const BANNED = 'tg-bench-banned';
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

const dir = mkdtempSync(join(tmpdir(), 'tgb-'));
const key = generateKeyPair();
const now = Date.now();
const body = {
  schema: 'toolguard.policy/v1',
  version: 1,
  issued_at: new Date(now - 60_000).toISOString(),
  expires_at: new Date(now + 86_400_000).toISOString(),
  mode: 'enforce',
  rules: [
    {
      id: 'bench',
      name: 'Bench banned tool',
      action: 'block',
      message: 'bench',
      process: { names: [BANNED] },
    },
  ],
};
const policyFile = join(dir, 'policy.dsse.json');
writeFileSync(
  policyFile,
  JSON.stringify(
    signEnvelope(JSON.stringify(body), POLICY_PAYLOAD_TYPE, [parsePrivateKey(key.privateKeyPem)]),
  ),
);
const socketDir = join(dir, 'run');
const configFile = join(dir, 'config.json');
writeFileSync(
  configFile,
  JSON.stringify({
    'paths.state_dir': join(dir, 'state'),
    'paths.socket_dir': socketDir,
    'paths.bootstrap_policy': policyFile,
    'policy.trusted_keys': [key.publicKeyPem],
    'sensors.install.enabled': false,
    'enforcement.notify_desktop': false,
    'log.level': 'warn',
  }),
);

const exe = join(dir, BANNED);
copyFileSync(spawnSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim(), exe);
chmodSync(exe, 0o755);

const guardd = spawn(
  process.execPath,
  [new URL('../bin/guardd.js', import.meta.url).pathname, '--config', configFile],
  {
    stdio: ['ignore', 'ignore', 'inherit'],
  },
);

function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, fields 14 and 15
}
function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}
async function cpuPercentOver(ms) {
  const t0 = cpuTicks(guardd.pid);
  const w0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  return ((cpuTicks(guardd.pid) - t0) / CLK_TCK / ((performance.now() - w0) / 1000)) * 100;
}
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

try {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await callDaemon(join(socketDir, 'guardd.sock'), 'status', {}, 2000);
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const procCount = spawnSync('sh', ['-c', 'ls -d /proc/[0-9]* | wc -l'], { encoding: 'utf8' }).stdout.trim();
  const idleCpu = await cpuPercentOver(5000);
  const idleRss = rssMiB(guardd.pid);

  const latencies = [];
  let notKilled = 0;
  const t0 = cpuTicks(guardd.pid);
  const w0 = performance.now();
  for (let i = 0; i < LAUNCHES; i++) {
    // A random pause first: launches right after a kill would all land at the same phase of the
    // scan interval and measure that phase instead of the real distribution.
    await new Promise((r) => setTimeout(r, Math.random() * 150));
    const started = performance.now();
    const child = spawn(exe, ['30'], { stdio: 'ignore' });
    const { signal } = await new Promise((res) =>
      child.once('exit', (code, sig) => res({ code, signal: sig })),
    );
    if (signal !== 'SIGKILL') notKilled++;
    latencies.push(performance.now() - started);
  }
  const runCpu = ((cpuTicks(guardd.pid) - t0) / CLK_TCK / ((performance.now() - w0) / 1000)) * 100;
  const runRss = rssMiB(guardd.pid);
  latencies.sort((a, b) => a - b);

  console.log(
    `guardd, 1-rule policy, default interval, ${procCount} processes on the machine, ${LAUNCHES} launches`,
  );
  console.table({
    'launch→kill ms': {
      p50: +pct(latencies, 50).toFixed(1),
      p95: +pct(latencies, 95).toFixed(1),
      p99: +pct(latencies, 99).toFixed(1),
      max: +latencies.at(-1).toFixed(1),
      'not killed': notKilled,
    },
  });
  console.table({
    'guardd idle (5 s)': { 'CPU % of one core': +idleCpu.toFixed(2), 'RSS MiB': +idleRss.toFixed(1) },
    'guardd during launches': { 'CPU % of one core': +runCpu.toFixed(2), 'RSS MiB': +runRss.toFixed(1) },
  });
} finally {
  guardd.kill('SIGTERM');
  await new Promise((r) => guardd.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
