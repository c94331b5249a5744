/**
 * Open marks only on file systems pre-exec deny is attached to, with the real listener (root,
 * Linux, fanotify) reading the real mount table: a banned script identified on a FUSE mount whose
 * daemon never answers is not marked (`no_mount`), at once, without touching the mount (guardd
 * would otherwise wait on the user's daemon); one on a local file system is.
 */
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { ExecDenyListener, loadExecPermAddon } from '../../src/enforcement/exec-deny.js';
import { compileMatcher, type Matcher } from '../../src/policy/matcher.js';
import type { ProcessObservation } from '../../src/sensors/observation.js';
import { policyBody } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { mountStalled, type StalledMount } from '../sensors/hostile-fs.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

describe.runIf(runnable)('open marks and the mount table', () => {
  const dir = tempDir('tgomm-');
  let mnt: StalledMount;
  let listener: ExecDenyListener;
  const matcher: Matcher = compileMatcher(
    policyBody([
      {
        id: 'tgomm-banned',
        name: 'Banned',
        action: 'block',
        message: 'banned',
        process: { script_packages: ['tgomm-pkg'] },
      },
    ]),
    { platform: 'linux', homes: [] },
  );

  function observation(script: string, dev: number, ino: number): ProcessObservation {
    return {
      kind: 'process',
      pid: 4242,
      ppid: 1,
      startTime: 1,
      name: 'node',
      exe: '/usr/bin/node',
      argv: ['node', script],
      owner: { uid: 0, user: 'root', groups: [], home: null },
      tty: null,
      scriptPackage: {
        name: 'tgomm-pkg',
        version: '1.0.0',
        root: dir,
        script,
        scriptFile: { dev, ino, owner: 0, packageOwner: 0 },
      },
    };
  }

  beforeAll(async () => {
    mnt = await mountStalled(dir);
    listener = new ExecDenyListener({
      addon: loadExecPermAddon(),
      deadlineMs: 200,
      logger: silentLogger(),
      matcher: () => matcher,
      // Every exec on the machine while this runs: allowed (no rule matches it), cached.
      observe: async (req) => ({
        kind: 'process',
        pid: req.pid,
        ppid: 0,
        startTime: 0,
        name: '',
        exe: req.path || null,
        argv: [],
        owner: { uid: -1, user: null, groups: [], home: null },
        tty: null,
      }),
      decide: () => null,
      denied: async () => ({ actionTaken: 'denied', latencyMs: 0, error: null }),
    });
    listener.policyChanged();
    listener.start();
  });

  afterAll(async () => {
    listener?.stop();
    await mnt?.release();
  });

  it('a script on a stalled FUSE mount: not marked, at once; a local one: marked', () => {
    const status = listener.status();
    expect(status.skipped.some((m) => m.mount === mnt.path && m.fstype.startsWith('fuse'))).toBe(true);
    const d = (obs: ProcessObservation) => {
      const decision = matcher.match(obs, { now: Date.now(), hostname: 'h', deviceTags: [] });
      if (!decision) throw new Error('no decision');
      return decision;
    };
    const onFuse = observation(join(mnt.path, 'pkg', 'cli.js'), 1, 2);
    const t0 = performance.now();
    listener.openMarks.considerNow(onFuse, d(onFuse));
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(listener.status().open_marks).toMatchObject({ marked: 0, refused: { no_mount: 1 } });

    const local = join(dir, 'cli.js');
    writeFileSync(local, '// banned\n');
    const st = statSync(local);
    const obs = observation(local, st.dev, st.ino);
    listener.openMarks.considerNow(obs, d(obs));
    expect(listener.status().open_marks).toMatchObject({ marked: 1, added: 1 });
    expect(listener.status().counters.file_marks).toBe(1);
  });
});
