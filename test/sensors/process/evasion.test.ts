/**
 * The evasion matrix (issue 4): the same banned tool launched every way we know, as real processes
 * on the real /proc, through the real sensor, matcher, enforcer and block action. Each launch must
 * end killed, with a `process.blocked` event saying why it matched. Linux only (procfs source).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, linkSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentEvent } from '../../../src/events/event-types.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import {
  alive,
  type BannedFixtures,
  type Launched,
  launch,
  makeBannedFixtures,
  type Pipeline,
  policy,
  startPipeline,
} from './harness.js';

const linux = process.platform === 'linux';

describe.runIf(linux)('evasion matrix (real processes)', () => {
  let dir: string;
  let f: BannedFixtures;
  let other: string;
  let p: Pipeline;
  let env: NodeJS.ProcessEnv;
  let early: Launched;

  beforeAll(async () => {
    dir = tempDir('tg-ev-');
    f = makeBannedFixtures(dir);
    other = join(dir, 'other');
    mkdirSync(other, { recursive: true });
    env = { ...process.env, PATH: `${f.binDir}:${process.env.PATH ?? ''}` };
    // Started before the sensor: the first full scan must find it.
    early = launch(f.binary, ['30']);
    await waitFor(() => early.child.pid !== undefined && alive(early.child.pid), 'early process running');
    p = await startPipeline(policy([f.rule]));
  });

  afterAll(async () => {
    await p?.stop();
  });

  function killedEvents(): AgentEvent[] {
    return p.events
      .ofType('process.blocked')
      .filter((e) => (e.outcome as { action_taken: string }).action_taken === 'killed');
  }

  /** Launches, waits until the launched process is gone, returns the new block events. */
  async function blocked(run: () => Launched): Promise<{ exit: unknown; events: AgentEvent[] }> {
    const before = killedEvents().length;
    const l = run();
    const exit = await l.exited;
    const events = await waitFor(
      () => (killedEvents().length > before ? killedEvents().slice(before) : null),
      'a process.blocked event',
    );
    return { exit, events };
  }

  it('kills a process started before the sensor (first full scan)', async () => {
    expect(await early.exited).toBe('SIGKILL');
    const e = killedEvents().find((x) => x.pid === early.child.pid);
    expect(e?.reason).toBe('name');
  });

  const table: { how: string; reasons: string[]; run: () => Launched }[] = [
    { how: 'direct', reasons: ['name'], run: () => launch(f.binary, ['30']) },
    {
      how: 'symlink with another name',
      reasons: ['name'], // the real executable's basename is still the tool's
      run: () => {
        const link = join(other, 'innocent-link');
        symlinkSync(f.binary, link);
        return launch(link, ['30']);
      },
    },
    {
      how: 'copy with another name (hash)',
      reasons: ['sha256'],
      run: () => {
        const copy = join(other, 'renamed-copy');
        copyFileSync(f.binary, copy);
        execFileSync('chmod', ['755', copy]);
        return launch(copy, ['30']);
      },
    },
    {
      how: 'hard link with another name',
      reasons: ['sha256'],
      run: () => {
        const hard = join(other, 'hardlinked');
        linkSync(f.binary, hard);
        return launch(hard, ['30']);
      },
    },
    { how: 'env tool', reasons: ['name'], run: () => launch('env', [f.tool, '30'], env) },
    { how: 'sh -c', reasons: ['name'], run: () => launch('sh', ['-c', `${f.tool} 30; true`], env) },
    {
      how: 'exec -a othername (bash)',
      reasons: ['name'],
      run: () => launch('bash', ['-c', `exec -a innocent ${f.binary} 30`]),
    },
    {
      how: 'node <script> (JS CLI)',
      reasons: ['script_package'],
      run: () =>
        launch(process.execPath, [join(f.prefixes[0] as string, 'lib', 'node_modules', f.pkg, 'cli.js')]),
    },
    {
      how: 'node <script without its extension> after an option taking a value',
      reasons: ['script_package'],
      run: () =>
        launch(process.execPath, [
          '--experimental-default-type',
          'commonjs',
          join(f.prefixes[1] as string, 'lib', 'node_modules', f.pkg, 'cli'),
        ]),
    },
    {
      how: 'JS CLI bin from another global prefix',
      reasons: ['script_package'],
      run: () => launch(join(f.prefixes[1] as string, 'bin', f.pkgBin), [], env),
    },
    {
      how: 'JS CLI through a renamed symlink',
      reasons: ['script_package'],
      run: () => {
        const link = join(other, 'harmless-js');
        symlinkSync(join(f.prefixes[0] as string, 'lib', 'node_modules', f.pkg, 'cli.js'), link);
        return launch(link, [], env);
      },
    },
    {
      how: 'npm exec from a local tarball (npx)',
      reasons: ['script_package'],
      run: () =>
        launch(
          'npm',
          [
            'exec',
            '--yes',
            '--prefer-offline',
            '--no-audit',
            '--no-fund',
            '--loglevel=error',
            `--cache=${join(dir, 'npx-cache')}`,
            `--package=${f.tarball}`,
            '--',
            f.pkgBin,
          ],
          env,
          dir,
        ),
    },
  ];

  for (const c of table) {
    it(`blocks: ${c.how}`, async () => {
      const { exit, events } = await blocked(c.run);
      // The launched process is the banned one (SIGKILL) or a wrapper that exits once it died.
      expect(exit).not.toBeNull();
      expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(c.reasons));
      for (const e of events) {
        expect(alive(e.pid as number)).toBe(false);
        expect((e.outcome as { details: { killed: number[] } }).details.killed).toContain(e.pid);
        expect(e.rule).toMatchObject({ id: f.rule.id, action: 'block' });
      }
    });
  }

  it('kills 200 rapid launches in a row, and leaves an unrelated process alone', async () => {
    const innocent = launch('sleep', ['30']);
    const launches: Launched[] = [];
    for (let i = 0; i < 200; i++) launches.push(launch(f.binary, ['30']));
    const exits = await Promise.all(launches.map((l) => l.exited));
    expect(exits.filter((x) => x === 'SIGKILL').length).toBe(200);
    const pids = new Set(launches.map((l) => l.child.pid));
    await waitFor(
      () => killedEvents().filter((e) => pids.has(e.pid as number)).length === 200,
      '200 block events',
    );
    expect(innocent.child.pid !== undefined && alive(innocent.child.pid)).toBe(true);
    innocent.child.kill('SIGKILL');
  });
});
