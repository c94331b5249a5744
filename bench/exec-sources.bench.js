// Exec sources benchmark (issue 18), on Linux as the stand-in for macOS and Windows. Needs
// `npm run build` first (dist/). For each exec source — Linux exec events, eslogger (macOS), the
// WMI process start trace (Windows) — with the same exec lines (bench/lib/exec-stream-fixtures.js):
//   - parse cost per event (µs): the source's pure parser alone (Linux: the addon's /proc report →
//     RawProcess, fromSnapshot), PARSE_EVENTS events of a typical argv and of a 32 KiB argv, the
//     fastest of ROUNDS rounds;
//   - replay → decision latency (ms, p50/p99/max) at RATE events/s: the real source, the real
//     ProcessSensor and the compiled matcher (one rule that matches every replayed exec by name, so
//     each exec ends in a decision), the time from the line being written to `decide`:
//       eslogger / windows-start: a stand-in program (node) writes REPLAY_EVENTS lines to the
//       source through a real pipe, paced at RATE/s, and logs when it wrote each line;
//       Linux: the source's addon is replaced by a replayer in this process that delivers the
//       same events at RATE/s in batches of one (the kernel → addon hop is not in the number).
// The sweep (ps-list / procfs) is set to 10 minutes so only the events are measured.
// Prints measured numbers only.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../dist/common/logger.js';
import { compileMatcher } from '../dist/policy/matcher.js';
import { ProcessSensor } from '../dist/sensors/process-sensor.js';
import { parseEsloggerLine } from '../dist/sensors/process-sources/eslogger-parser.js';
import { createEsloggerSource } from '../dist/sensors/process-sources/eslogger-source.js';
import { ExecEventsSource, fromSnapshot } from '../dist/sensors/process-sources/exec-events-source.js';
import { parseWindowsStartLine } from '../dist/sensors/process-sources/windows-start-parser.js';
import { createWindowsStartSource } from '../dist/sensors/process-sources/windows-start-source.js';
import { esloggerExecLine, procExecEvent, windowsStartLine } from './lib/exec-stream-fixtures.js';

const PARSE_EVENTS = 20_000;
/** Events of the 32 KiB argv case: 2,000 × 32 KiB keeps the inputs at ~64 MiB per source. */
const PARSE_LARGE_EVENTS = 2000;
const ROUNDS = 5;
const RATE = 1000;
const REPLAY_EVENTS = 3000;
/** pids of replayed execs start here: above any real pid (pid_max ≤ 2^22), so none is guardd's. */
const PID_BASE = 10_000_000;

const dir = mkdtempSync(join(tmpdir(), 'tgxos-bench-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const now = () => performance.timeOrigin + performance.now();

const exec = (i, argv) => ({
  pid: PID_BASE + i,
  ppid: 4200,
  uid: 501,
  exe: '/opt/vendor/bin/bench-banned',
  argv,
  startMs: Date.parse('2026-12-04T10:00:07Z') + i * 1000,
  teamId: 'ABCDE12345',
  signingId: 'com.vendor.bench',
});
const TYPICAL = ['bench-banned', '--print', 'hello world', '--model', 'x'];
const LARGE = ['bench-banned', 'a'.repeat(32 * 1024 - 20)];

const SOURCES = {
  'exec-events (Linux)': {
    make: (e) => procExecEvent(e),
    parse: (ev) => fromSnapshot(ev),
  },
  'eslogger (macOS)': {
    make: (e) => esloggerExecLine(e),
    parse: (line) => parseEsloggerLine(line),
  },
  'windows-start (Windows)': {
    make: (e) => windowsStartLine(e),
    parse: (line) => parseWindowsStartLine(line),
  },
};

function parseCost(src, argv, events) {
  const inputs = Array.from({ length: events }, (_, i) => src.make(exec(i, argv)));
  let best = Number.POSITIVE_INFINITY;
  let sink = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t = performance.now();
    for (const x of inputs) sink += src.parse(x) ? 1 : 0;
    best = Math.min(best, ((performance.now() - t) * 1000) / events);
  }
  if (sink === 0) throw new Error('nothing parsed');
  return best;
}

console.log(
  `parse cost per event (µs, fastest of ${ROUNDS} rounds of ${PARSE_EVENTS.toLocaleString()} events; 32 KiB argv: ${PARSE_LARGE_EVENTS.toLocaleString()})`,
);
console.log('| source | typical argv | 32 KiB argv | line bytes (typical) |');
console.log('|---|---:|---:|---:|');
for (const [name, src] of Object.entries(SOURCES)) {
  const sample = src.make(exec(0, TYPICAL));
  const bytes =
    typeof sample === 'string' ? Buffer.byteLength(sample) : sample.stat.length + sample.cmdline.length;
  console.log(
    `| ${name} | ${parseCost(src, TYPICAL, PARSE_EVENTS).toFixed(2)} | ${parseCost(src, LARGE, PARSE_LARGE_EVENTS).toFixed(2)} | ${bytes} |`,
  );
}

/** A stand-in program that writes `lines` at RATE/s and logs when it wrote each (ms since the epoch). */
function standIn(name, lines) {
  const data = join(dir, `${name}.lines.json`);
  const times = join(dir, `${name}.times.json`);
  writeFileSync(data, JSON.stringify(lines));
  const path = join(dir, name);
  writeFileSync(
    path,
    `#!${process.execPath}
const fs = require('fs');
const lines = JSON.parse(fs.readFileSync(${JSON.stringify(data)}, 'utf8'));
const written = [];
const t0 = performance.now() + 200;
let i = 0;
function pump() {
  const due = Math.min(lines.length, Math.floor((performance.now() - t0) * ${RATE} / 1000) + 1);
  while (i < due) {
    written.push(performance.timeOrigin + performance.now());
    process.stdout.write(lines[i++] + '\\n');
  }
  if (i < lines.length) setImmediate(pump);
  else fs.writeFileSync(${JSON.stringify(times)}, JSON.stringify(written));
}
setTimeout(pump, 200);
setInterval(() => {}, 1 << 30);
`,
  );
  chmodSync(path, 0o755);
  return { path, times: () => JSON.parse(readFileSync(times, 'utf8')) };
}

/** Runs the real sensor on `source` with a rule matching every replayed exec; resolves with decide times by pid. */
async function decideTimes(source, expected, finished) {
  const matcher = compileMatcher(
    {
      schema: 'toolguard.policy/v1',
      version: 1,
      issued_at: '2026-11-24T00:00:00Z',
      expires_at: '2099-01-01T00:00:00Z',
      mode: 'monitor',
      rules: [
        { id: 'bench', name: 'bench', action: 'audit', message: 'm', process: { names: ['bench-banned'] } },
      ],
    },
    { platform: 'linux', homes: [] },
  );
  const ctx = { now: Date.now(), hostname: 'h', deviceTags: [] };
  const decided = new Map();
  let done;
  const all = new Promise((r) => {
    done = r;
  });
  const sensor = new ProcessSensor({
    source,
    users: { owner: (uid) => ({ uid, user: `u${uid}`, groups: [], home: null }) },
    intervalMs: 600_000,
    logger: silentLogger(),
    onObservation: (obs) => {
      if (obs.pid < PID_BASE) return;
      if (matcher.match(obs, ctx)) decided.set(obs.pid, now());
      if (decided.size >= expected) done();
    },
  });
  sensor.setMatcher(matcher);
  await sensor.start();
  const timeout = setTimeout(done, 60_000);
  await all;
  clearTimeout(timeout);
  await finished?.();
  await sensor.stop();
  return { decided };
}

function latencyRow(name, written, decided) {
  const lat = [];
  for (let i = 0; i < written.length; i++) {
    const d = decided.get(PID_BASE + i);
    if (d !== undefined) lat.push(d - written[i]);
  }
  lat.sort((a, b) => a - b);
  console.log(
    `| ${name} | ${lat.length}/${written.length} | ${pct(lat, 50).toFixed(2)} | ${pct(lat, 99).toFixed(2)} | ${lat[lat.length - 1].toFixed(2)} |`,
  );
}

console.log(`\nreplay → decision latency at ${RATE} events/s (${REPLAY_EVENTS} execs, ms)`);
console.log('| source | decided | p50 | p99 | max |');
console.log('|---|---:|---:|---:|---:|');

{
  // Linux: the addon replaced by an in-process replayer delivering the same events at RATE/s.
  const events = Array.from({ length: REPLAY_EVENTS }, (_, i) => procExecEvent(exec(i, TYPICAL)));
  const written = [];
  let deliver;
  const counters = { received: 0, kernelDrops: 0, queueDrops: 0 };
  const addon = {
    open: (onBatch) => {
      deliver = onBatch;
      return 1;
    },
    counters: () => counters,
    close: () => undefined,
  };
  const source = new ExecEventsSource({ logger: silentLogger(), addon: () => addon });
  const replay = () =>
    new Promise((resolve) => {
      const t0 = performance.now() + 200;
      let i = 0;
      const pump = () => {
        const due = Math.min(events.length, Math.floor(((performance.now() - t0) * RATE) / 1000) + 1);
        while (i < due) {
          written.push(now());
          counters.received++;
          deliver([events[i++]], { ...counters });
        }
        if (i < events.length) setImmediate(pump);
        else resolve();
      };
      setTimeout(pump, 200);
    });
  const running = decideTimes(source, REPLAY_EVENTS);
  await replay();
  const { decided } = await running;
  latencyRow('exec-events (Linux, in-process replayer)', written, decided);
}

for (const [name, create, make] of [
  ['eslogger (macOS, stand-in via pipe)', createEsloggerSource, (e) => esloggerExecLine(e)],
  ['windows-start (Windows, stand-in via pipe)', createWindowsStartSource, (e) => windowsStartLine(e)],
]) {
  const prog = standIn(
    name.split(' ')[0],
    Array.from({ length: REPLAY_EVENTS }, (_, i) => make(exec(i, TYPICAL))),
  );
  const source = create({ logger: silentLogger(), program: prog.path, pslist: { procStartTimes: false } });
  let written = [];
  // The stand-in logs its write times once the last line is out: read them before stopping it.
  const finished = async () => {
    for (let tries = 0; tries < 200 && written.length === 0; tries++) {
      try {
        written = prog.times();
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  const { decided } = await decideTimes(source, REPLAY_EVENTS, finished);
  latencyRow(name, written, decided);
}

const ps = spawnSync('ps', ['-o', 'rss=', '-p', String(process.pid)], { encoding: 'utf8' });
console.log(`\n(bench process RSS at the end: ${(Number(ps.stdout.trim()) / 1024).toFixed(0)} MiB)`);
process.exit(0);
