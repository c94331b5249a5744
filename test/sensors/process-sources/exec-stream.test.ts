/**
 * The macOS (eslogger) and Windows (WMI start trace) exec sources end to end on Linux, through the
 * real pipeline (ExecStreamSource → ProcessSensor → compiled matcher → Enforcer → the real block
 * action with the ps-list process control macOS and Windows use): the configured program is a
 * stand-in (a small node script) that records how it was run, replays a stream built from the
 * documented formats (bench/lib/exec-stream-fixtures.js) naming a real process, and then dies or stays. It proves
 * spawn → parse → match → kill (by a criterion only the replayed line carries: a team id, an argv
 * flag the real process does not have), restart with backoff, the fallback to ps-list polling when
 * the program is refused, missing or speaks another format version, and hostile streams.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import psList from 'ps-list';
import { afterAll, describe, expect, it } from 'vitest';
import {
  esloggerExecLine,
  esloggerExitLine,
  esloggerForkLine,
  type FixtureExec,
  windowsStartLine,
} from '../../../bench/lib/exec-stream-fixtures.js';
import { silentLogger } from '../../../src/common/logger.js';
import { createEsloggerSource } from '../../../src/sensors/process-sources/eslogger-source.js';
import type { ExecStreamSource } from '../../../src/sensors/process-sources/exec-stream-source.js';
import { PsListProcessControl } from '../../../src/sensors/process-sources/process-control.js';
import {
  createWindowsStartSource,
  WINDOWS_START_SCRIPT,
} from '../../../src/sensors/process-sources/windows-start-source.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { launch, type Pipeline, policy, startPipeline } from '../process/harness.js';

const dir = tempDir('tgxos-stream-');
chmodSync(dir, 0o755);
const pipelines: Pipeline[] = [];
// Stopping a pipeline closes its source, which kills its stand-in.
afterAll(async () => {
  for (const p of pipelines) await p.stop();
});

/** One run of the stand-in: bytes on stdout, then stderr, then exit (or stay until killed). */
interface Run {
  readonly stdout: Buffer | string;
  readonly stderr?: string;
  readonly exit?: number;
  readonly hold?: boolean;
}

interface StandIn {
  readonly path: string;
  /** Each start: when (ms since the epoch) and its arguments. */
  spawns(): { t: number; args: string[] }[];
}

/** Writes a stand-in program: the n-th start plays runs[n] (the last run repeats). */
function standIn(name: string, runs: Run[]): StandIn {
  const home = join(dir, `${name}-${randomBytes(3).toString('hex')}`);
  mkdirSync(home, { recursive: true });
  const files = runs.map((r, i) => {
    const f = join(home, `run${i}.out`);
    writeFileSync(f, r.stdout);
    return { file: f, stderr: r.stderr ?? '', exit: r.exit ?? 0, hold: r.hold ?? false };
  });
  writeFileSync(join(home, 'runs.json'), JSON.stringify(files));
  const log = join(home, 'spawns.log');
  const path = join(home, name);
  writeFileSync(
    path,
    `#!${process.execPath}
const fs = require('fs');
const log = ${JSON.stringify(log)};
const runs = JSON.parse(fs.readFileSync(${JSON.stringify(join(home, 'runs.json'))}, 'utf8'));
const n = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\\n').filter(Boolean).length : 0;
fs.appendFileSync(log, JSON.stringify({ t: Date.now(), args: process.argv.slice(2) }) + '\\n');
const run = runs[Math.min(n, runs.length - 1)];
process.stdout.write(fs.readFileSync(run.file), () => {
  if (run.hold) { setInterval(() => {}, 1 << 30); return; }
  process.stderr.write(run.stderr, () => process.exit(run.exit));
});
`,
  );
  chmodSync(path, 0o755);
  return {
    path,
    spawns: () => {
      try {
        return readFileSync(log, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l));
      } catch {
        return [];
      }
    },
  };
}

/** A running copy of `sleep` under a unique name, with the facts ps reports for it (macOS identity). */
async function target(
  prefix: string,
): Promise<{ exec: FixtureExec; name: string; exited: Promise<unknown> }> {
  const name = `${prefix}${randomBytes(4).toString('hex')}`;
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  const path = join(bin, name);
  copyFileSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), path);
  chmodSync(path, 0o755);
  const l = launch(path, ['30']);
  const pid = l.child.pid as number;
  const ps = await waitFor(async () => {
    const p = (await psList()).find((d) => d.pid === pid && d.name === name);
    return p?.startTime instanceof Date ? p : undefined;
  }, `ps to list ${name}`);
  return {
    name,
    exited: l.exited,
    exec: {
      pid,
      ppid: process.pid,
      uid: process.getuid?.() ?? 0,
      exe: path,
      argv: [path, '30'],
      startMs: (ps.startTime as Date).getTime(),
    },
  };
}

const lines = (...l: string[]): string => `${l.join('\n')}\n`;

async function pipeline(
  source: ExecStreamSource,
  rules: Parameters<typeof policy>[0],
  intervalMs: number,
  platform: 'darwin' | 'win32',
): Promise<Pipeline> {
  const p = await startPipeline(policy(rules), {
    source,
    intervalMs,
    control: new PsListProcessControl(undefined, platform),
    platform,
  });
  pipelines.push(p);
  return p;
}

function blockedFor(p: Pipeline, pid: number) {
  return () => p.events.ofType('process.blocked').find((e) => (e as unknown as { pid: number }).pid === pid);
}

const details = (p: Pipeline) => p.sensor.status().details as Record<string, unknown>;

describe('eslogger source (stand-in eslogger on Linux)', () => {
  it('kills a process from its replayed exec by team id, then restarts the dead program with backoff', async () => {
    const team = `T${randomBytes(5).toString('hex').toUpperCase().slice(0, 9)}`;
    const t = await target('tgxe');
    const exec = { ...t.exec, teamId: team, signingId: 'com.example.banned' };
    const prog = standIn('eslogger', [
      { stdout: lines(esloggerForkLine(exec), esloggerExecLine(exec)), exit: 1 },
      { stdout: '', exit: 1 },
      { stdout: '', exit: 1 },
      { stdout: '', hold: true },
    ]);
    const source = createEsloggerSource({
      logger: silentLogger(),
      program: prog.path,
      backoffMs: [100, 200, 400],
      pslist: { procStartTimes: false },
    });
    // The sweep is out of the way: only the replayed line can say who signed the program.
    const p = await pipeline(
      source,
      [{ id: 'xos-team', name: 'Team', action: 'block', message: 'no', process: { team_ids: [team] } }],
      600_000,
      'darwin',
    );
    expect(await t.exited).toBe('SIGKILL');
    const ev = await waitFor(blockedFor(p, exec.pid), 'process.blocked');
    expect(ev).toMatchObject({ reason: 'signing', name: t.name, exe: exec.exe });
    // Died three times, started four; each restart waited at least its backoff step.
    await waitFor(
      () => prog.spawns().length === 4 && details(p).exec_events === 'active',
      'the fourth start, active',
    );
    const s = prog.spawns();
    expect(s.every((x) => JSON.stringify(x.args) === '["exec","fork","exit"]')).toBe(true);
    [100, 200, 400].forEach((ms, i) => {
      expect((s[i + 1]?.t ?? 0) - (s[i]?.t ?? 0)).toBeGreaterThanOrEqual(ms - 5);
    });
    expect(details(p)).toMatchObject({
      source: 'eslogger',
      exec_source: 'eslogger',
      exec_events_received: 1,
      exec_events_forks: 1,
      exec_events_restarts: 3,
      exec_events_spawns: 4,
    });
    expect(p.sensor.intervalMs).toBe(600_000);
  });

  it('falls back to ps-list polling when eslogger is refused (no Full Disk Access), and says why', async () => {
    const prog = standIn('eslogger', [
      {
        stdout: '',
        stderr: 'Failed to create ES client: ES_NEW_CLIENT_RESULT_ERR_NOT_PERMITTED\n',
        exit: 78,
      },
    ]);
    const source = createEsloggerSource({
      logger: silentLogger(),
      program: prog.path,
      refusedRetryMs: 3_600_000,
      pslist: { procStartTimes: false },
    });
    const name = `tgxf${randomBytes(4).toString('hex')}`;
    const p = await pipeline(
      source,
      [{ id: 'xos-fb', name: 'FB', action: 'block', message: 'no', process: { names: [name] } }],
      200,
      'darwin',
    );
    await waitFor(() => details(p).exec_events === 'unavailable', 'the refusal');
    expect(details(p)).toMatchObject({ source: 'ps-list', exec_source: 'eslogger' });
    expect(String(details(p).exec_events_error)).toMatch(
      /^GUARD_EXEC_STREAM_NOT_PERMITTED: .*Full Disk Access/,
    );
    // Polling does the job meanwhile.
    const bin = join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    copyFileSync(
      execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(),
      join(bin, name),
    );
    chmodSync(join(bin, name), 0o755);
    const l = launch(join(bin, name), ['30']);
    expect(await l.exited).toBe('SIGKILL');
    await waitFor(blockedFor(p, l.child.pid as number), 'process.blocked by the sweep');
    expect(prog.spawns().length).toBe(1);
  });

  it('falls back when eslogger is missing (macOS before 13) or writes a schema version it does not know', async () => {
    const missing = createEsloggerSource({ logger: silentLogger(), program: join(dir, 'no-such-eslogger') });
    const p1 = await pipeline(
      missing,
      [{ id: 'xos-m', name: 'M', action: 'audit', message: 'm', process: { names: ['xos-none'] } }],
      200,
      'darwin',
    );
    await waitFor(() => details(p1).exec_events === 'unavailable', 'missing');
    expect(String(details(p1).exec_events_error)).toMatch(/^GUARD_EXEC_STREAM_MISSING: /);
    expect(details(p1).source).toBe('ps-list');

    const t = await target('tgxv');
    const v2 = esloggerExecLine({ ...t.exec, teamId: 'ABCDE12345' }, (m) => {
      m.schema_version = 2;
    });
    const prog = standIn('eslogger', [{ stdout: lines(v2), hold: true }]);
    const future = createEsloggerSource({
      logger: silentLogger(),
      program: prog.path,
      refusedRetryMs: 3_600_000,
    });
    const p2 = await pipeline(
      future,
      [{ id: 'xos-v', name: 'V', action: 'block', message: 'v', process: { team_ids: ['ABCDE12345'] } }],
      600_000,
      'darwin',
    );
    await waitFor(() => details(p2).exec_events === 'unavailable', 'the version gate');
    expect(String(details(p2).exec_events_error)).toMatch(
      /^GUARD_EXEC_STREAM_SCHEMA: eslogger format version 2/,
    );
    expect(p2.sensor.status().skipped).toMatchObject({ schema_unsupported: 1 });
    // Not read: the process it named runs on.
    expect(p2.events.ofType('process.blocked')).toEqual([]);
  });

  it('reads a hostile stream: garbage, a line too long, non-UTF-8 paths, unknown events, a huge argv, a truncated last line', async () => {
    const team = 'ZXCVB09876';
    const t = await target('tgxh');
    const banned = { ...t.exec, teamId: team, argv: [t.exec.exe, 'x'.repeat(1024 * 1024)] };
    const other: FixtureExec = { ...t.exec, pid: 999_999_0, exe: '/tmp/PATHBYTES/odd', teamId: null };
    // Every occurrence of the path (dyld_exec_path, target.executable.path) carries invalid UTF-8.
    const odd = esloggerExecLine(other)
      .split('PATHBYTES')
      .flatMap((part, i) =>
        i === 0 ? [Buffer.from(part)] : [Buffer.from([0xff, 0xfe, 0x41]), Buffer.from(part)],
      );
    const unknownEvent = esloggerExecLine(other, (m) => {
      m.event = { mmap: { protection: 1 } };
      m.event_type = 20;
    });
    const stdout = Buffer.concat([
      Buffer.from(
        lines('eslogger: warming up', esloggerExecLine({ ...other, argv: ['y'.repeat(3 * 1024 * 1024)] })),
      ),
      ...odd,
      Buffer.from('\n'),
      Buffer.from(lines(unknownEvent, esloggerExecLine(banned), esloggerExitLine(other))),
      Buffer.from(esloggerExecLine(other).slice(0, 300)),
    ]);
    const prog = standIn('eslogger', [
      { stdout, exit: 0 },
      { stdout: '', hold: true },
    ]);
    const source = createEsloggerSource({
      logger: silentLogger(),
      program: prog.path,
      backoffMs: [50],
      maxLineBytes: 2 * 1024 * 1024,
      pslist: { procStartTimes: false },
    });
    const p = await startPipeline(
      policy([{ id: 'xos-h', name: 'H', action: 'block', message: 'h', process: { team_ids: [team] } }]),
      {
        source,
        intervalMs: 600_000,
        control: new PsListProcessControl(undefined, 'darwin'),
        platform: 'darwin',
        keepObservations: true,
      },
    );
    pipelines.push(p);
    expect(await t.exited).toBe('SIGKILL');
    const ev = await waitFor(blockedFor(p, banned.pid), 'process.blocked');
    expect(ev).toMatchObject({ reason: 'signing' });
    await waitFor(() => prog.spawns().length === 2, 'the restart after the stream ended');
    const seen = p.observed.find((o) => o.pid === other.pid);
    expect(seen?.exe).toMatch(/^\/tmp\/\uFFFD+A\/odd$/);
    const killedObs = p.observed.find((o) => o.pid === banned.pid && o.signing);
    expect(killedObs?.argv.join(' ').length).toBeLessThanOrEqual(32 * 1024);
    expect(p.sensor.status().skipped).toMatchObject({
      not_json: 1,
      line_too_long: 1,
      path_not_utf8: 1,
      unknown_event: 1,
      cmdline_truncated: 1,
      truncated: 1,
    });
    expect(details(p)).toMatchObject({
      exec_events_received: 2,
      exec_events_exits: 1,
      exec_events_queue_drops: 3,
    });
  });
});

describe('sweep and lines together', () => {
  it('a process a line reported is not reported again by the ps-list sweep (same pid and start time)', async () => {
    const go = join(dir, `go-${randomBytes(3).toString('hex')}`);
    const line = join(dir, `line-${randomBytes(3).toString('hex')}`);
    const home = join(dir, `dedupe-${randomBytes(3).toString('hex')}`);
    mkdirSync(home, { recursive: true });
    const program = join(home, 'eslogger');
    // Writes the line the test put in `line` once `go` exists.
    writeFileSync(
      program,
      `#!${process.execPath}
const fs = require('fs');
const wait = setInterval(() => {
  if (!fs.existsSync(${JSON.stringify(go)})) return;
  clearInterval(wait);
  process.stdout.write(fs.readFileSync(${JSON.stringify(line)}));
  setInterval(() => {}, 1 << 30);
}, 20);
`,
    );
    chmodSync(program, 0o755);
    const source = createEsloggerSource({
      logger: silentLogger(),
      program,
      pslist: { procStartTimes: false },
    });
    const p = await startPipeline(
      policy([
        { id: 'xos-d', name: 'D', action: 'audit', message: 'd', process: { names: ['xos-nothing'] } },
      ]),
      { source, intervalMs: 600_000, keepObservations: true, platform: 'darwin' },
    );
    pipelines.push(p);
    // The sweeps of the start (the first scan, the one after eslogger started) are over.
    await waitFor(() => details(p).exec_events === 'active' && p.observed.length > 0, 'the first sweeps');
    await source.settled();
    // A process new to ps-list, reported by a line first.
    const t = await target('tgxd');
    writeFileSync(line, lines(esloggerExecLine({ ...t.exec, teamId: 'ABCDE12345' })));
    writeFileSync(go, '');
    await waitFor(() => p.observed.some((o) => o.pid === t.exec.pid), 'the exec line');
    const sweeps = Number(details(p).exec_events_resyncs);
    for (let i = 0; i < 3; i++) {
      await p.sensor.runTick('scan');
      await source.settled();
    }
    expect(Number(details(p).exec_events_resyncs)).toBeGreaterThanOrEqual(sweeps + 3);
    // Seen by those sweeps (ps lists it), reported once: by the line, with its signing facts.
    expect(p.observed.filter((o) => o.pid === t.exec.pid).map((o) => o.signing?.teamId)).toEqual([
      'ABCDE12345',
    ]);
  });
});

describe('Windows start-trace source (stand-in powershell on Linux)', () => {
  it('runs the shipped script, kills a process from its replayed start line (argv read for the pid)', async () => {
    const flag = `--xos-flag-${randomBytes(4).toString('hex')}`;
    const t = await target('tgxw');
    const start = windowsStartLine({ ...t.exec, argv: [...t.exec.argv, flag] });
    const prog = standIn('powershell.exe', [
      { stdout: lines('{"v":1,"type":"ready","pid":1}', start), hold: true },
    ]);
    const source = createWindowsStartSource({
      logger: silentLogger(),
      program: prog.path,
      pslist: { procStartTimes: false },
    });
    const p = await pipeline(
      source,
      [{ id: 'xos-w', name: 'W', action: 'block', message: 'w', process: { argv_patterns: [flag] } }],
      600_000,
      'win32',
    );
    expect(await t.exited).toBe('SIGKILL');
    expect(await waitFor(blockedFor(p, t.exec.pid), 'process.blocked')).toMatchObject({ reason: 'argv' });
    const args = prog.spawns()[0]?.args ?? [];
    expect(args.slice(0, 6)).toEqual([
      '-NoLogo',
      '-NoProfile',
      '-NonInteractive',
      '-ExecutionPolicy',
      'Bypass',
      '-EncodedCommand',
    ]);
    expect(Buffer.from(args[6] ?? '', 'base64').toString('utf16le')).toBe(WINDOWS_START_SCRIPT);
    expect(details(p)).toMatchObject({
      source: 'windows-start',
      exec_events: 'active',
      exec_events_received: 1,
    });
  });

  it('falls back to ps-list when the script reports WMI refused the subscription', async () => {
    const prog = standIn('powershell.exe', [
      { stdout: lines('{"v":1,"type":"error","code":"access_denied","message":"Access denied"}'), exit: 3 },
    ]);
    const source = createWindowsStartSource({
      logger: silentLogger(),
      program: prog.path,
      refusedRetryMs: 3_600_000,
    });
    const p = await pipeline(
      source,
      [{ id: 'xos-wr', name: 'WR', action: 'audit', message: 'w', process: { names: ['xos-none'] } }],
      200,
      'win32',
    );
    await waitFor(() => details(p).exec_events === 'unavailable', 'the refusal');
    expect(String(details(p).exec_events_error)).toMatch(
      /^GUARD_EXEC_STREAM_NOT_PERMITTED: WMI process start trace: Access denied/,
    );
    expect(details(p).source).toBe('ps-list');
  });
});
