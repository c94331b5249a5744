/**
 * The real daemon (dist/, as root) kills a program identified by content markers alone, whatever
 * it is called and wherever it lies: a renamed copy and a copy with a byte appended of a
 * marker-carrying executable (a copy of `sleep` with the markers appended; an ELF runs with
 * trailing bytes). An unrelated program with one marker of the set but not the other keeps
 * running. Each kill is one `process.blocked` event with reason `content`.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Guardd,
  makeKey,
  policyBody,
  ruleEvents,
  startGuardd,
  writeSignedPolicy,
} from '../../helpers/daemon.js';
import { waitSettled } from '../../helpers/settled.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { alive, launch } from './harness.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

describe.runIf(runnable)('guardd kills by content markers (post-exec)', () => {
  const dir = tempDir('tgct-gcm-');
  const run = Date.now().toString(36);
  // Unique per run: other suites' daemons on this machine never carry these markers.
  const markerA = `tgct-content-marker-A-${run}`;
  const markerB = `tgct-content-marker-B-${run}`;
  let guardd: Guardd;
  let marked: string;
  let sleepBin: string;
  const other = join(dir, 'elsewhere');

  beforeAll(async () => {
    sleepBin = execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim();
    marked = join(dir, 'tgctbanned');
    copyFileSync(sleepBin, marked);
    appendFileSync(marked, `\n${markerA}\n${markerB}\n`);
    execFileSync('chmod', ['755', marked]);
    mkdirSync(other);
    const key = makeKey();
    const policyFile = writeSignedPolicy(
      join(dir, 'policy.dsse.json'),
      policyBody([
        {
          id: 'tgct-content',
          name: 'Content-banned',
          action: 'block',
          message: 'banned by content',
          process: { markers: [[markerA, markerB]] },
        },
        {
          // Records the half-marked program: its event proves guardd decided on it (with its markers).
          id: 'tgct-half',
          name: 'Half-marked',
          action: 'audit',
          message: 'seen',
          process: { names: ['half-marked'] },
        },
      ]),
      key,
    );
    guardd = await startGuardd(join(dir, 'agent'), {
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policyFile,
    });
  });

  afterAll(async () => {
    await guardd?.stop('SIGKILL');
    execFileSync('rm', ['-rf', dir]);
  });

  function contentEvents(type = 'process.blocked', rule = 'tgct-content'): { pid: number; reason: string }[] {
    return ruleEvents(guardd, type, rule, 100).map((e) => ({ pid: e.pid ?? -1, reason: e.reason ?? '' }));
  }

  it.each([
    [
      'a renamed copy',
      (): string => {
        const p = join(other, 'innocent-name');
        copyFileSync(marked, p);
        execFileSync('chmod', ['755', p]);
        return p;
      },
    ],
    [
      'a copy with one byte appended',
      (): string => {
        const p = join(other, 'padded');
        copyFileSync(marked, p);
        appendFileSync(p, 'x');
        execFileSync('chmod', ['755', p]);
        return p;
      },
    ],
  ])('%s is killed, one process.blocked event with reason content', async (_how, make) => {
    const path = make();
    const l = launch(path, ['30']);
    expect(await l.exited).toBe('SIGKILL');
    const pid = l.child.pid as number;
    const events = await waitFor(() => {
      const e = contentEvents().filter((x) => x.pid === pid);
      return e.length > 0 ? e : undefined;
    }, 'the process.blocked event');
    expect(events).toEqual([{ pid, reason: 'content' }]);
  });

  it('the same file run again is killed again (decided from the cache by its identity); rewritten in place, it is read anew', async () => {
    mkdirSync(join(dir, 'rw'));
    // Named like the audit rule's program: once rewritten without the full set, it is audited.
    const p = join(dir, 'rw', 'half-marked');
    copyFileSync(marked, p);
    execFileSync('chmod', ['755', p]);
    await waitSettled(p); // what was read of it is cached only then
    for (let i = 0; i < 3; i++) {
      const l = launch(p, ['30']);
      expect(await l.exited).toBe('SIGKILL');
      const pid = l.child.pid as number;
      await waitFor(() => contentEvents().some((e) => e.pid === pid), 'the process.blocked event');
    }
    // Rewritten in place (same inode, one marker of the set left): a new identity, so no answer
    // the cache holds for the old bytes applies.
    const ino = statSync(p).ino;
    writeFileSync(p, Buffer.concat([readFileSync(sleepBin), Buffer.from(`\n${markerA}\n`)]));
    expect(statSync(p).ino).toBe(ino);
    const l = launch(p, ['30']);
    const pid = l.child.pid as number;
    await waitFor(
      () => contentEvents('process.audited', 'tgct-half').some((e) => e.pid === pid),
      'the rewritten program decided (audited)',
    );
    expect(alive(pid)).toBe(true);
    expect(contentEvents().some((e) => e.pid === pid)).toBe(false);
    l.child.kill('SIGKILL');
  });

  it('a program with only one marker of the set keeps running', async () => {
    const half = join(other, 'half-marked');
    copyFileSync(sleepBin, half);
    appendFileSync(half, `\n${markerA}\n`);
    execFileSync('chmod', ['755', half]);
    const l = launch(half, ['30']);
    const pid = l.child.pid as number;
    // The audit event comes from the decision on the scanned observation: block would have won.
    await waitFor(
      () => contentEvents('process.audited', 'tgct-half').some((e) => e.pid === pid),
      'the half-marked program decided (audited)',
    );
    expect(alive(pid)).toBe(true);
    expect(contentEvents().some((e) => e.pid === pid)).toBe(false);
    l.child.kill('SIGKILL');
  });
});
