/**
 * A program on a user's own FUSE mount (fusermount3, no `allow_other`: root itself is refused
 * every access, so guardd cannot open /proc/<pid>/exe) is read as that user and judged by its
 * bytes like any other exec (src/sensors/fuse-exe.ts). Real parts: guardd from dist as root, a
 * real unprivileged user, a real FUSE daemon of theirs (fuse-passthrough.c) mounted with the
 * setuid fusermount3. Before: a renamed copy of a program banned by hash or by content markers ran
 * there for good (its hash and markers were never read: `unreadable`).
 */
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, chownSync, copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callDaemon } from '../../../src/control/control-client.js';
import {
  type Guardd,
  makeKey,
  policyBody,
  ruleEvents,
  startGuardd,
  writeSignedPolicy,
} from '../../helpers/daemon.js';
import { LOCKED_TEST_TIMEOUT_MS } from '../../helpers/machine-lock.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser, spawnAs, type TestUser } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { buildPassthrough, mountAsUser, type UserMount, userFuse } from './fuse-user.js';
import { alive } from './harness.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

interface FuseStatus {
  read: number;
  spawned: number;
  timeout: number;
  children: number;
  stuck: number;
}

describe.runIf(runnable)("guardd reads a program on the user's own FUSE mount as that user", () => {
  const dir = tempDir('tgfo-');
  const run = Date.now().toString(36);
  const markerA = `tgfo-marker-A-${run}`;
  const markerB = `tgfo-marker-B-${run}`;
  const sleepBin = '/bin/sleep';
  let user: TestUser;
  let guardd: Guardd;
  let mount: UserMount;
  let stalled: UserMount | undefined;
  let restoreFuse: (() => void) | undefined;
  let daemon: string;
  let hashed: Buffer;

  /** A copy of sleep with `trailer` appended, put in `m`'s source as `name` (the user's, 0755). */
  function place(m: UserMount, name: string, trailer: string): string {
    const p = join(m.src, name);
    copyFileSync(sleepBin, p);
    appendFileSync(p, trailer);
    chownSync(p, user.uid, user.gid);
    chmodSync(p, 0o755);
    return join(m.mnt, name);
  }

  async function fuseStatus(): Promise<FuseStatus> {
    const s = await callDaemon<{ sensors: { name: string; details: { fuse_exe?: FuseStatus } }[] }>(
      join(guardd.socketDir, 'guardd.sock'),
      'status',
    );
    const f = s.sensors.find((x) => x.name === 'process')?.details.fuse_exe;
    if (!f) throw new Error('no fuse_exe in the process sensor status');
    return f;
  }

  /** Runs `path` as the user and waits for its kill and its process.blocked event for `rule`. */
  async function killedBy(path: string, rule: string): Promise<{ reason: string; ms: number }> {
    const started = performance.now();
    const child = spawnAs(user, path, ['60']);
    let end: { how: string | number | null; ms: number } | undefined;
    child.once('exit', (code, signal) => {
      end = { how: signal ?? code, ms: performance.now() - started };
    });
    const { how, ms } = await waitFor(() => end, `${path} to end`);
    expect(how).toBe('SIGKILL');
    const pid = child.pid as number;
    const event = await waitFor(
      () => ruleEvents(guardd, 'process.blocked', rule, 100).find((e) => e.pid === pid),
      `the process.blocked event of ${rule}`,
    );
    return { reason: event.reason ?? '', ms };
  }

  beforeAll(async () => {
    restoreFuse = await userFuse();
    chmodSync(dir, 0o755);
    user = createTestUser('tgfo');
    daemon = buildPassthrough(dir);
    mount = await mountAsUser(user, daemon, 'fuse');
    hashed = Buffer.concat([readFileSync(sleepBin), Buffer.from(`\ntgfo-hash-${run}\n`)]);
    const key = makeKey();
    const policyFile = writeSignedPolicy(
      join(dir, 'policy.dsse.json'),
      policyBody([
        {
          id: 'tgfo-hash',
          name: 'Banned by hash',
          action: 'block',
          message: 'banned by hash',
          process: { sha256: [createHash('sha256').update(hashed).digest('hex')] },
        },
        {
          id: 'tgfo-content',
          name: 'Banned by content',
          action: 'block',
          message: 'banned by content',
          process: { markers: [[markerA, markerB]] },
        },
      ]),
      key,
    );
    guardd = await startGuardd(join(dir, 'agent'), {
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policyFile,
    });
  }, LOCKED_TEST_TIMEOUT_MS);

  afterAll(async () => {
    await guardd?.stop('SIGKILL');
    await stalled?.release();
    await mount?.release();
    restoreFuse?.();
  });

  it('a renamed copy of a program banned by hash is killed after exec: process.blocked, rule tgfo-hash, reason sha256', async () => {
    const p = place(mount, 'innocent-a', `\ntgfo-hash-${run}\n`);
    expect(readFileSync(join(mount.src, 'innocent-a')).equals(hashed)).toBe(true);
    // the premise: root is refused the program on the mount
    let code = '';
    try {
      readFileSync(p);
    } catch (err) {
      code = (err as NodeJS.ErrnoException).code ?? '';
    }
    expect(code).toBe('EACCES');
    expect((await killedBy(p, 'tgfo-hash')).reason).toBe('sha256');
  });

  it('a renamed copy of a program banned by content markers is killed after exec: process.blocked, rule tgfo-content, reason content', async () => {
    const p = place(mount, 'innocent-b', `\n${markerA}\n${markerB}\n`);
    expect((await killedBy(p, 'tgfo-content')).reason).toBe('content');
  });

  it('an unrelated program on the same mount is read as its owner and keeps running', async () => {
    const before = (await fuseStatus()).read;
    const p = place(mount, 'unrelated', `\ntgfo-plain-${run}\n`);
    const child = spawnAs(user, p, ['60']);
    const pid = child.pid as number;
    // hash and markers read (one child, shared by both reads)
    await waitFor(async () => (await fuseStatus()).read >= before + 2, 'the unrelated program read');
    // a banned program killed after it: guardd has acted on what came later
    await killedBy(place(mount, 'innocent-c', `\ntgfo-hash-${run}\n`), 'tgfo-hash');
    expect(alive(pid)).toBe(true);
    expect(ruleEvents(guardd, 'process.blocked', 'tgfo-hash').some((e) => e.pid === pid)).toBe(false);
    expect(ruleEvents(guardd, 'process.blocked', 'tgfo-content').some((e) => e.pid === pid)).toBe(false);
    child.kill('SIGKILL');
  });

  it('on a FUSE mount the user made in a user namespace of their own (`unshare -Urm`: `user_id=0` there), a renamed copy banned by markers is killed', async () => {
    const own = await mountAsUser(user, daemon, 'userns', {
      populate: (src) => {
        const p = join(src, 'innocent-ns');
        copyFileSync(sleepBin, p);
        appendFileSync(p, `\n${markerA}\n${markerB}\n`);
        chownSync(p, user.uid, user.gid);
        chmodSync(p, 0o755);
      },
      inOwnNamespace: { run: ['innocent-ns', '60'] },
    });
    try {
      const pid = own.pid as number;
      const event = await waitFor(
        () => ruleEvents(guardd, 'process.blocked', 'tgfo-content', 100).find((e) => e.pid === pid),
        'the process.blocked event of the program in the namespace',
      );
      expect(event.reason).toBe('content');
      expect(event.outcome?.action_taken).toBe('killed');
      expect(alive(pid)).toBe(false);
    } finally {
      await own.release();
    }
  });

  it("a mount of the user's whose daemon stalls guardd's reader does not hold the kill of a banned program on their other mount", async () => {
    // Lets the exec open the program, never answers an open after it: guardd's reader waits.
    stalled = await mountAsUser(user, daemon, 'stall', { stallOpensAfter: 1 });
    const p = place(stalled, 'slow', `\ntgfo-slow-${run}\n`);
    const before = await fuseStatus();
    const slow = spawnAs(user, p, ['60']);
    // guardd's child for it has started and waits on the daemon
    await waitFor(async () => (await fuseStatus()).spawned > before.spawned, "the stalled mount's reader");
    const first = await killedBy(place(mount, 'innocent-d', `\ntgfo-hash-${run}\n`), 'tgfo-hash');
    // well inside the stalled read's deadline (FUSE_READ_TIMEOUT_MS, 5 s): it waited on nothing
    expect(first.ms).toBeLessThan(4000);
    // past the deadline the stuck child is ended but stays (the kernel waits on the daemon for it)
    await waitFor(async () => (await fuseStatus()).stuck === 1, 'the stalled read given up', {
      timeoutMs: 20_000,
    });
    const s = await fuseStatus();
    expect(s.timeout).toBeGreaterThanOrEqual(1);
    expect(alive(slow.pid as number)).toBe(true);
    // and the user's other mount is still read: its banned programs still die
    const second = await killedBy(place(mount, 'innocent-e', `\n${markerA}\n${markerB}\n`), 'tgfo-content');
    expect(second.reason).toBe('content');
    slow.kill('SIGKILL');
    // the daemon gone, its requests fail and the stuck child ends
    await stalled.release();
    await waitFor(async () => (await fuseStatus()).stuck === 0, 'the stuck reader ended');
  });
});
