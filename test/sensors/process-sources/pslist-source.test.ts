/**
 * The ps-list source diffs snapshots (fed by a fake snapshot function, as on macOS/Windows) and,
 * on Linux, works with the real ps-list too.
 */
import { describe, expect, it } from 'vitest';
import { PsListSource } from '../../../src/sensors/process-sources/pslist-source.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { launch, makeBannedFixtures, policy, startPipeline } from '../process/harness.js';

type Desc = {
  pid: number;
  ppid: number;
  name: string;
  cmd?: string;
  uid?: number;
  path?: string;
  startTime?: Date;
};

describe('PsListSource', () => {
  it('reports new and changed identities only; survives failures and junk', async () => {
    let snap: Desc[] | Error = [
      {
        pid: 10,
        ppid: 1,
        name: 'bash',
        cmd: '/bin/bash -l',
        uid: 501,
        path: '/bin/bash',
        startTime: new Date(1000),
      },
      { pid: 11, ppid: 10, name: 'claude', cmd: 'claude --yes', uid: 501 }, // Windows-like: no start time
      { pid: 12, ppid: 999, name: 'ps' }, // ps-list's own ps: not reported
    ];
    const source = new PsListSource({
      selfPid: 999,
      procStartTimes: false,
      list: async () => {
        if (snap instanceof Error) throw snap;
        return snap as never;
      },
    });
    const first = await source.poll();
    expect(first).toEqual([
      {
        pid: 10,
        ppid: 1,
        startTime: 1000,
        name: 'bash',
        exe: '/bin/bash',
        argv: ['/bin/bash', '-l'],
        uid: 501,
        tty: null,
      },
      {
        pid: 11,
        ppid: 10,
        startTime: 0,
        name: 'claude',
        exe: null,
        argv: ['claude', '--yes'],
        uid: 501,
        tty: null,
      },
    ]);
    expect(await source.poll()).toEqual([]);
    // 11 exec's another program under the same name: same pid and start time, new command line.
    snap = [
      snap[0] as Desc,
      { pid: 11, ppid: 10, name: 'claude', cmd: 'claude /opt/banned/cli.js', uid: 501 },
    ];
    expect((await source.poll()).map((r) => [r.pid, r.argv])).toEqual([
      [11, ['claude', '/opt/banned/cli.js']],
    ]);
    expect(await source.poll()).toEqual([]);
    // pid 10 reused (new start time), 11 gone, 13 new; junk entries are counted.
    snap = [
      { pid: 10, ppid: 1, name: 'bash', startTime: new Date(5000) },
      { pid: 13, ppid: 1, name: 'node', cmd: 'x'.repeat(40_000) },
      { pid: -1, ppid: 0, name: 'junk' },
      { pid: 14, ppid: 0, name: 42 as unknown as string },
    ];
    const second = await source.poll();
    expect(second.map((r) => [r.pid, r.startTime])).toEqual([
      [10, 5000],
      [13, 0],
    ]);
    expect(source.skipped).toMatchObject({ malformed: 2, cmdline_truncated: 1 });
    snap = new Error('ps failed');
    expect(await source.poll()).toEqual([]);
    expect(source.skipped.snapshot_failed).toBe(1);
    source.reset();
    snap = [{ pid: 10, ppid: 1, name: 'bash', startTime: new Date(5000) }];
    expect((await source.poll()).length).toBe(1);
  });

  it.runIf(process.platform !== 'win32')('finds a real new process with the real ps-list', async () => {
    const source = new PsListSource();
    await source.poll();
    const l = launch('sleep', ['30']);
    const found = await waitFor(
      async () => (await source.poll()).find((r) => r.pid === l.child.pid),
      'sleep in a snapshot',
    );
    expect(found.name).toBe('sleep');
    expect(found.argv).toEqual(['sleep', '30']);
    l.child.kill('SIGKILL');
  });
});

describe.runIf(process.platform === 'linux')('ps-list source through the whole pipeline', () => {
  it('a banned binary seen in a ps-list snapshot is killed', async () => {
    const f = makeBannedFixtures(tempDir('tg-psl-'));
    const p = await startPipeline(policy([f.rule]), { source: new PsListSource(), intervalMs: 200 });
    const l = launch(f.binary, ['30']);
    expect(await l.exited).toBe('SIGKILL');
    const [e] = await waitFor(() => {
      const ev = p.events.ofType('process.blocked').filter((x) => x.pid === l.child.pid);
      return ev.length > 0 ? ev : null;
    }, 'block event');
    await p.stop();
    expect(e?.outcome).toMatchObject({ action_taken: 'killed' });
  });
});
