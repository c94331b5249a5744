/**
 * The process sensor on the real /proc: what an observation holds, the first full scan, exec
 * noticed, costly fields only when the matcher needs them, a new policy re-reporting everything,
 * and a throwing handler counted rather than stopping the scans.
 */
import { execFileSync } from 'node:child_process';
import { realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/common/logger.js';
import { compileMatcher } from '../../../src/policy/matcher.js';
import type { Observation, ProcessObservation } from '../../../src/sensors/observation.js';
import { ProcessSensor } from '../../../src/sensors/process-sensor.js';
import { readStat } from '../../../src/sensors/process-sources/proc-files.js';
import { ProcfsSource } from '../../../src/sensors/process-sources/procfs-source.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { launch, makeBannedFixtures, policy } from './harness.js';

const users = { owner: (uid: number) => ({ uid, user: `user${uid}`, groups: ['g'], home: '/home/x' }) };

describe.runIf(process.platform === 'linux')('ProcessSensor on the real /proc', () => {
  let sensor: ProcessSensor | null = null;
  afterEach(async () => {
    await sensor?.stop();
    sensor = null;
  });

  function start(onObservation: (o: Observation) => void, intervalMs = 20): ProcessSensor {
    sensor = new ProcessSensor({
      source: new ProcfsSource(),
      users,
      onObservation,
      intervalMs,
      logger: silentLogger(),
    });
    return sensor;
  }

  it('reports existing processes at start (not itself) and new ones with their facts', async () => {
    const seen: ProcessObservation[] = [];
    const s = start((o) => {
      if (o.kind === 'process') seen.push(o);
    });
    await s.start();
    expect(seen.some((o) => o.pid === process.ppid)).toBe(true);
    expect(seen.some((o) => o.pid === process.pid)).toBe(false);
    expect(seen.some((o) => o.pid === 1 || o.ppid === 0)).toBe(true);

    const l = launch('sleep', ['30']);
    const pid = l.child.pid as number;
    const obs = await waitFor(() => seen.find((o) => o.pid === pid && o.name === 'sleep'), 'sleep observed');
    expect(obs).toEqual({
      kind: 'process',
      pid,
      ppid: process.pid,
      startTime: readStat('/proc', pid)?.startTime,
      name: 'sleep',
      exe: expect.stringMatching(/\/sleep$/),
      argv: ['sleep', '30'],
      owner: users.owner(process.getuid?.() ?? 0),
      tty: null,
    });
    expect(obs.sha256).toBeUndefined();
    expect(obs.scriptPackage).toBeUndefined();
    l.child.kill('SIGKILL');
    const st = s.status();
    expect(st).toMatchObject({
      name: 'process',
      running: true,
      details: { source: 'procfs', interval_ms: 20 },
    });
    expect(st.details.observed as number).toBeGreaterThan(1);
  });

  it('notices a process that exec()s another program after it was first seen', async () => {
    const seen: ProcessObservation[] = [];
    const s = start((o) => {
      if (o.kind === 'process') seen.push(o);
    });
    await s.start();
    // The scenario: a shell that replaces itself with another program a moment later.
    const l = launch('bash', ['-c', 'sleep 0.3; exec -a renamed sleep 30']);
    const pid = l.child.pid as number;
    await waitFor(() => seen.find((o) => o.pid === pid && o.name === 'bash'), 'bash observed');
    const after = await waitFor(() => seen.find((o) => o.pid === pid && o.name === 'sleep'), 'exec noticed');
    expect(after.argv).toEqual(['renamed', '30']);
    l.child.kill('SIGKILL');
  });

  it('notices an exec that keeps the comm (a wrapper named like the interpreter execs it)', async () => {
    const seen: ProcessObservation[] = [];
    const s = start((o) => {
      if (o.kind === 'process') seen.push(o);
    });
    await s.start();
    // `<dir>/node` is a shell: its comm is "node" already, and so is the comm of the real node it
    // exec's later. Only the program image tells the two apart.
    const dir = tempDir('tg-samecomm-');
    const wrapper = join(dir, 'node');
    symlinkSync('/bin/sh', wrapper);
    const fifo = join(dir, 'go');
    execFileSync('mkfifo', [fifo]);
    const script = join(dir, 'late.js');
    writeFileSync(script, 'setTimeout(() => {}, 60000);\n');
    const l = launch(wrapper, ['-c', `read _ < ${fifo}; exec ${process.execPath} ${script}`]);
    const pid = l.child.pid as number;
    await waitFor(() => seen.find((o) => o.pid === pid && o.argv[1] === '-c'), 'wrapper observed');
    writeFileSync(fifo, 'go\n');
    const after = await waitFor(
      () => seen.find((o) => o.pid === pid && o.argv.includes(script)),
      'exec with the same comm noticed',
    );
    expect(after.name).toBe('node');
    expect(after.exe).toBe(realpathSync(process.execPath));
    l.child.kill('SIGKILL');
  });

  it('fills sha256 and scriptPackage only when the matcher needs them; a new policy re-reports all', async () => {
    const f = makeBannedFixtures(tempDir('tg-sens-'));
    const seen: ProcessObservation[] = [];
    const s = start((o) => {
      if (o.kind === 'process') seen.push(o);
    });
    s.setMatcher(compileMatcher(policy([f.rule], 'enforce', 1), { platform: 'linux', homes: [] }));
    await s.start();
    const js = launch(process.execPath, [`${f.prefixes[0]}/lib/node_modules/${f.pkg}/cli.js`]);
    const obs = await waitFor(
      () => seen.find((o) => o.pid === js.child.pid && o.scriptPackage),
      'script package',
    );
    expect(obs.scriptPackage).toMatchObject({ name: f.pkg, version: '1.0.0' });
    expect(obs.sha256).toMatch(/^[0-9a-f]{64}$/);

    const before = seen.length;
    s.setMatcher(compileMatcher(policy([f.rule], 'enforce', 2), { platform: 'linux', homes: [] }));
    await waitFor(
      () => seen.slice(before).some((o) => o.pid === js.child.pid),
      'reported again after a new policy',
    );
    js.child.kill('SIGKILL');
  });

  it('counts a throwing or rejecting handler and keeps scanning', async () => {
    let calls = 0;
    const s = start(() => {
      calls++;
      if (calls % 2 === 0) throw new Error('boom');
      return Promise.reject(new Error('async boom')) as never;
    });
    await s.start();
    const l = launch('sleep', ['30']);
    await waitFor(() => (s.status().skipped.handler_error ?? 0) >= 2, 'errors counted');
    const ticks = s.status().details.ticks as number;
    await waitFor(() => (s.status().details.ticks as number) > ticks + 1, 'still scanning');
    l.child.kill('SIGKILL');
  });
});
