/**
 * Linux exec events (native/procevents + ExecEventsSource) with real processes, as root: the addon
 * reports a real exec with its /proc facts; the real pipeline records programs that live ~5 ms and
 * kills a banned package's interpreter script with the /proc sweep out of the way (so only events
 * can have seen them); a real ENOBUFS (a tiny socket buffer and a burst of execs) is counted and
 * resynced; and when the addon or the socket is unavailable the source polls and says why.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/common/logger.js';
import { compileMatcher } from '../../../src/policy/matcher.js';
import { ContentMarkerScanner, identityKey } from '../../../src/sensors/content-markers.js';
import {
  type ExecEvent,
  type ExecEventCounters,
  ExecEventsSource,
  loadProcEvents,
  PROCEVENTS_ADDON_PATH,
} from '../../../src/sensors/process-sources/exec-events-source.js';
import { identityOfPath } from '../../helpers/file-identity.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { launch, makeBannedFixtures, type Pipeline, policy, startPipeline } from '../process/harness.js';

const dir = tempDir('tgev-src-');
chmodSync(dir, 0o755);

/** A copy of `sleep` under a unique name (≤ 15 chars, so it is also the comm). */
function uniqueSleep(prefix: string): { name: string; path: string } {
  const name = `${prefix}${randomBytes(4).toString('hex')}`;
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  const path = join(bin, name);
  copyFileSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), path);
  chmodSync(path, 0o755);
  return { name, path };
}

function readFileSafe(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** An audit rule naming `names` (records, never kills). */
function auditRule(id: string, names: string[]) {
  return {
    id,
    name: id,
    action: 'audit' as const,
    message: 'recorded by the exec events test',
    process: { names },
  };
}

/** Pipelines started by a test, stopped after it (sources closed, descriptors released). */
const running: Pipeline[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) await p.stop();
});

/** The real pipeline on exec events, with the /proc sweep pushed out to `sweepMs`. */
async function eventsPipeline(body: ReturnType<typeof policy>, sweepMs: number, rcvbuf?: number) {
  const source = new ExecEventsSource({ logger: silentLogger(), ...(rcvbuf ? { rcvbuf } : {}) });
  const p = await startPipeline(body, { source, intervalMs: sweepMs, keepObservations: true });
  running.push(p);
  expect(source.kind).toBe('exec-events');
  return { p, source };
}

function pidsRecorded(p: Pipeline, ruleId: string): Set<number> {
  const pids = new Set<number>();
  for (const e of p.events.events) {
    const ev = e as unknown as { rule?: { id: string }; pid?: number };
    if (ev.rule?.id === ruleId && typeof ev.pid === 'number') pids.add(ev.pid);
  }
  return pids;
}

describe('native/procevents', () => {
  it('reports a real exec with the facts /proc gave right after it, and closes cleanly', async () => {
    const addon = loadProcEvents();
    const seen: ExecEvent[] = [];
    // What each batch carried as counters: the first one always, later ones only after a drop.
    const carried: (ExecEventCounters | undefined)[] = [];
    const handle = addon.open(
      (events, c) => {
        seen.push(...events);
        carried.push(c);
      },
      { rcvbuf: 1 << 20 },
    );
    try {
      const prog = uniqueSleep('tgeva');
      const child = launch(prog.path, ['30']);
      const pid = child.child.pid as number;
      const ev = await waitFor(() => seen.find((e) => e.pid === pid), `an exec event for pid ${pid}`);
      expect(ev.stat).toContain(`(${prog.name})`);
      expect(ev.exe).toBe(prog.path);
      expect(Buffer.from(ev.cmdline ?? new Uint8Array()).toString()).toBe(`${prog.path}\u000030\u0000`);
      expect(ev.uid).toBe(process.getuid?.());
      // One more exec, in a batch of its own (the program's was delivered already).
      const later = launch('/bin/true', []);
      const laterPid = later.child.pid as number;
      await waitFor(() => seen.some((e) => e.pid === laterPid), `an exec event for pid ${laterPid}`);
      expect(carried[0]).toMatchObject({ kernelDrops: 0, queueDrops: 0, readerErrno: 0 });
      // Counters come again only with a batch after a drop.
      const told = carried.filter((c) => c !== undefined);
      for (let i = 1; i < told.length; i++) {
        const [a, b] = [told[i - 1], told[i]] as [ExecEventCounters, ExecEventCounters];
        expect(b.kernelDrops !== a.kernelDrops || b.queueDrops !== a.queueDrops).toBe(true);
      }
      if (told.length === 1) expect(carried.length).toBeGreaterThan(1);
      child.child.kill('SIGKILL');
      await child.exited;
    } finally {
      addon.close(handle);
    }
    addon.close(handle); // twice is safe
    const after = seen.length;
    execFileSync('/bin/true');
    // No batch is delivered once close returned: a later exec (round-tripped through a timer tick
    // of the event loop, where a pending batch would run) adds nothing.
    await new Promise<void>((r) => setImmediate(r));
    expect(seen.length).toBe(after);
    expect(addon.counters(handle).received).toBeGreaterThan(0);
  });

  it('refuses to open without CAP_NET_ADMIN: GUARD_PROCEVENTS_OPEN_FAILED with EPERM', () => {
    // Root with CAP_NET_ADMIN removed from its bounding set: a real kernel refusal.
    const r = spawnSync(
      'setpriv',
      [
        '--bounding-set=-net_admin',
        '--inh-caps=-net_admin',
        process.execPath,
        '-e',
        `try { require(${JSON.stringify(PROCEVENTS_ADDON_PATH)}).open(() => {}, { rcvbuf: 65536 });
               process.stdout.write('opened'); }
         catch (e) { process.stdout.write(JSON.stringify({ code: e.code, errno: e.errno })); }`,
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ code: 'GUARD_PROCEVENTS_OPEN_FAILED', errno: 1 });
  });
});

describe('ExecEventsSource', () => {
  it('records ≥ 99 % of 200 programs that live ~5 ms each, with the /proc sweep out of the way', async () => {
    const short = uniqueSleep('tgevs');
    const done = uniqueSleep('tgevd');
    const body = policy([auditRule('tgev-short', [short.name]), auditRule('tgev-done', [done.name])]);
    // A sweep every 10 minutes never runs during the test: only exec events can record these.
    const { p, source } = await eventsPipeline(body, 600_000);
    const script = `i=0; while [ $i -lt 200 ]; do "${short.path}" 0.005; i=$((i+1)); done; exec "${done.path}" 0`;
    const run = launch('sh', ['-c', script]);
    expect(await run.exited).toBe(0);
    // Events arrive in exec order: once the last program is recorded, every earlier one was handled.
    await waitFor(() => pidsRecorded(p, 'tgev-done').size === 1, 'the closing program to be recorded');
    const recorded = pidsRecorded(p, 'tgev-short').size;
    expect(recorded, JSON.stringify({ ...source.details(), skipped: source.skipped })).toBeGreaterThanOrEqual(
      198,
    );
    expect(recorded).toBeLessThanOrEqual(200);
    expect(source.details()).toMatchObject({ exec_events: 'active', exec_events_kernel_drops: 0 });
  });

  it("kills a banned package's interpreter script (node <pkg>/cli.js) from its exec event", async () => {
    const fx = makeBannedFixtures(join(dir, 'fx-script'));
    const { p } = await eventsPipeline(policy([fx.rule]), 600_000);
    const cli = join(fx.prefixes[0] as string, 'lib', 'node_modules', fx.pkg, 'cli.js');
    for (let i = 0; i < 5; i++) {
      const child = launch(process.execPath, [cli]);
      expect(await child.exited).toBe('SIGKILL');
      const pid = child.child.pid as number;
      await waitFor(
        () => p.events.ofType('process.blocked').find((e) => (e as unknown as { pid: number }).pid === pid),
        `process.blocked for ${pid}`,
      );
    }
    expect(p.sensor.status().details).toMatchObject({ source: 'exec-events' });
  });

  it('a relative script run in a directory really named "w (deleted)" is found there (the cwd is not cut)', async () => {
    const fx = makeBannedFixtures(join(dir, 'fx-deleted-name'));
    const { p } = await eventsPipeline(policy([fx.rule]), 600_000);
    // the package's own directory, renamed so its name ends the way the kernel marks a deleted cwd
    const root = join(fx.prefixes[0] as string, 'lib', 'node_modules', fx.pkg);
    const named = join(dirname(root), 'w (deleted)');
    renameSync(root, named);
    const child = launch(process.execPath, ['cli.js'], undefined, named);
    expect(await child.exited).toBe('SIGKILL');
    const pid = child.child.pid as number;
    const blocked = await waitFor(
      () => p.events.ofType('process.blocked').find((e) => (e as unknown as { pid: number }).pid === pid),
      `process.blocked for ${pid}`,
    );
    expect(blocked).toMatchObject({ reason: 'script_package' });
  });

  it('catches a process that execs a banned program long after it started (same pid, new image)', async () => {
    const fx = makeBannedFixtures(join(dir, 'fx-late'));
    const { p } = await eventsPipeline(policy([fx.rule]), 600_000);
    const fifo = join(dir, `late-${randomBytes(3).toString('hex')}`);
    execFileSync('mkfifo', [fifo]);
    // Waits for a line on the FIFO, then execs the banned binary: the pid was seen as `sh` first.
    const l = launch('sh', ['-c', `read x < ${fifo}; exec ${fx.binary} 30`]);
    const pid = l.child.pid as number;
    await waitFor(() => p.observed.some((o) => o.pid === pid && o.name === 'sh'), 'the shell observed first');
    writeFileSync(fifo, 'go\n');
    expect(await l.exited).toBe('SIGKILL');
    const blocked = await waitFor(
      () => p.events.ofType('process.blocked').find((e) => (e as unknown as { pid: number }).pid === pid),
      `process.blocked for ${pid}`,
    );
    expect(blocked).toMatchObject({ name: fx.tool });
  });

  it('keeps the sensor contracts: processes running at start are reported, a new policy reports them again', async () => {
    const prog = uniqueSleep('tgevp');
    const before = launch(prog.path, ['30']);
    const pid = before.child.pid as number;
    await waitFor(() => readFileSafe(`/proc/${pid}/comm`) === `${prog.name}\n`, 'the program to run');
    const body = policy([auditRule('tgev-policy', [prog.name])]);
    const { p } = await eventsPipeline(body, 600_000);
    // Started before the sensor: the first scan reports it (no exec event can).
    const times = () => p.events.events.filter((e) => (e as unknown as { pid?: number }).pid === pid).length;
    await waitFor(() => times() === 1, 'the program reported by the first scan');
    p.sensor.setMatcher(
      compileMatcher(policy([...body.rules], 'enforce', 2), { platform: 'linux', homes: [] }),
    );
    await p.sensor.runTick();
    await waitFor(() => times() === 2, 'the running program reported again under the new policy');
    before.child.kill('SIGKILL');
  });

  it("takes a program's markers from the cache by the identity read right after its exec, without opening the file", async () => {
    const marker = `tgev-identity-marker-${randomBytes(4).toString('hex')}`;
    const body = policy([
      {
        id: 'tgev-ident',
        name: 'By content',
        action: 'block',
        message: 'by content',
        process: { markers: [[marker]] },
      },
    ]);
    const automaton = compileMatcher(body, { platform: 'linux', homes: [] }).markers();
    if (automaton === null) throw new Error('the policy has markers');
    // The cache says `seeded` carries the marker — its bytes do not: only an answer from the
    // cache kills it. `plain`, the same bytes under another inode, is read and keeps running.
    const seeded = uniqueSleep('tgevk');
    const plain = uniqueSleep('tgevn');
    const cache = new Map([
      [`${identityKey(await identityOfPath(seeded.path))}|${automaton.generation}`, [...automaton.keys]],
    ]);
    const source = new ExecEventsSource({ logger: silentLogger() });
    const p = await startPipeline(body, {
      source,
      intervalMs: 600_000,
      keepObservations: true,
      markers: new ContentMarkerScanner({ cache }),
    });
    running.push(p);
    // On a loaded machine the event loop may get to an exec before the walker read its identity
    // (the file is then read, as without it, and says nothing): up to 10 launches.
    let killed: number | null = null;
    for (let i = 0; i < 10 && killed === null; i++) {
      const l = launch(seeded.path, ['30']);
      const pid = l.child.pid as number;
      const obs = await waitFor(
        () => p.observed.find((o) => o.pid === pid && o.contentMarkers !== undefined),
        'the seeded copy decided',
      );
      if (obs.contentMarkers?.length) {
        expect(await l.exited).toBe('SIGKILL');
        killed = pid;
      } else {
        // read from the file: nothing in it
        expect(obs.contentMarkers).toEqual([]);
        l.child.kill('SIGKILL');
      }
    }
    expect(killed).not.toBeNull();
    const ev = p.events.events.find((e) => (e as unknown as { pid?: number }).pid === killed) as unknown as {
      type: string;
      reason: string;
    };
    expect(ev).toMatchObject({ type: 'process.blocked', reason: 'content' });
    expect(source.details().exec_events_identities_taken).toBeGreaterThan(0);
    // The same bytes under another identity: read, no marker in them, left running.
    const l = launch(plain.path, ['30']);
    const pid = l.child.pid as number;
    const obs = await waitFor(
      () => p.observed.find((o) => o.pid === pid && o.contentMarkers !== undefined),
      'the plain copy decided',
    );
    expect(obs.contentMarkers).toEqual([]);
    expect(p.events.events.some((e) => (e as unknown as { pid?: number }).pid === pid)).toBe(false);
    l.child.kill('SIGKILL');
  });

  it('counts a real kernel drop (ENOBUFS) and resyncs from /proc: what the flood hid is recorded, nothing twice', async () => {
    const prog = uniqueSleep('tgevr');
    const body = policy([auditRule('tgev-resync', [prog.name])]);
    // The smallest buffer the kernel allows (a few events), and bursts of parallel execs.
    const { p, source } = await eventsPipeline(body, 600_000, 1);
    const first = launch(prog.path, ['30']);
    const pid1 = first.child.pid as number;
    await waitFor(() => pidsRecorded(p, 'tgev-resync').has(pid1), 'the program started before the flood');
    // Each burst also starts one long-lived program in the middle of the flood: its event may be lost.
    const hidden: number[] = [];
    const burst = `i=0; while [ $i -lt 400 ]; do /bin/true & if [ $i -eq 200 ]; then "${prog.path}" 30 >/dev/null 2>&1 & echo $!; fi; i=$((i+1)); done; wait`;
    await waitFor(
      async () => {
        const out = execFileSync('sh', ['-c', burst.replace('; wait', '')], { encoding: 'utf8' });
        hidden.push(Number(out.trim()));
        return (source.details().exec_events_kernel_drops as number) > 0;
      },
      'the kernel to drop exec events',
      { timeoutMs: 60_000, intervalMs: 1 },
    );
    await waitFor(() => (source.details().exec_events_resyncs as number) > 0, 'a resync after the drop');
    // With the sweep 10 minutes away, only an event or the resync can have recorded them.
    await waitFor(
      () => hidden.every((pid) => pidsRecorded(p, 'tgev-resync').has(pid)),
      'every program started during the flood',
    );
    const timesFirst = p.events.events.filter((e) => (e as unknown as { pid?: number }).pid === pid1).length;
    expect(timesFirst).toBe(1);
    for (const pid of [pid1, ...hidden]) process.kill(pid, 'SIGKILL');
  });
});

describe('fallback to polling', () => {
  it('polls /proc at its usual interval when the addon does not load, and says why', async () => {
    const fx = makeBannedFixtures(join(dir, 'fx-fallback'));
    const source = new ExecEventsSource({
      logger: silentLogger(),
      addon: () => loadProcEvents(join(dir, 'missing.node')),
    });
    const p = await startPipeline(policy([fx.rule]), { source, intervalMs: 0 });
    running.push(p);
    const details = p.sensor.status().details;
    expect(details).toMatchObject({ source: 'procfs', interval_ms: 100, exec_events: 'unavailable' });
    expect(String(details.exec_events_error)).toMatch(/^GUARD_PROCEVENTS_UNAVAILABLE: /);
    const child = launch(fx.binary, ['30']);
    expect(await child.exited).toBe('SIGKILL');
  });
});
