/**
 * To read a program on a user's own FUSE mount as its owner (src/sensors/fuse-exe.ts), guardd
 * finds the mount by its id — in the process's mountinfo when the mount is in a namespace of the
 * user's. That table is the user's to grow: in a user and mount namespace of their own they may
 * make 100,000 mounts (fs.mount-max), each line as long as their paths (~3 KB here). Found in
 * review: guardd read and parsed the whole table at every read, twice per exec (hash and markers),
 * before any bound — 8,000 bind mounts made it ~49 MB, a string and its split lines in guardd's
 * 192 MiB heap. Real parts: guardd from dist with the unit's heap cap, a real user, their
 * namespace (`unshare -Urm`) with the mounts, their FUSE daemon (fuse-passthrough.c) and the
 * program run from it there.
 */
import { appendFileSync, chmodSync, chownSync, copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Guardd } from '../../helpers/daemon.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser, type TestUser } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { compileC } from '../hostile-fs.js';
import {
  buildPassthrough,
  fuseExeStatus,
  mountAsUser,
  startReadingGuardd,
  type UserMount,
  userFuse,
} from './fuse-user.js';
import { alive } from './harness.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

/** Bind mounts made by the user in their namespace. */
const MOUNTS = 8000;

/**
 * `mountmany N DIR CMD ARGS…`: below DIR, a path of ~3,000 characters, bind-mounted on itself N
 * times (each a mountinfo line holding it twice), then CMD is exec'd in the same namespace.
 */
const MOUNTMANY_C = `
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc < 4) return 2;
  long n = atol(argv[1]);
  char path[4096];
  size_t len = (size_t)snprintf(path, sizeof path, "%s", argv[2]);
  while (len < 3000) {
    path[len++] = '/';
    for (int k = 0; k < 200 && len < 3000; k++) path[len++] = 'x';
    path[len] = 0;
    if (mkdir(path, 0755) != 0) { perror("mkdir"); return 3; }
  }
  long i;
  for (i = 0; i < n; i++)
    if (mount(path, path, NULL, MS_BIND, NULL) != 0) break;
  fprintf(stderr, "mounts %ld\\n", i);
  execv(argv[3], argv + 3);
  return 127;
}
`;

describe.runIf(runnable)('a program on a FUSE mount in a user’s namespace with a huge mount table', () => {
  const dir = tempDir('tgmt-');
  const run = Date.now().toString(36);
  let user: TestUser;
  let guardd: Guardd;
  let restoreFuse: (() => void) | undefined;
  let mount: UserMount | undefined;
  let daemon: string;
  let mountmany: string;

  beforeAll(async () => {
    restoreFuse = await userFuse();
    chmodSync(dir, 0o755);
    user = createTestUser('tgmt');
    daemon = buildPassthrough(dir);
    mountmany = compileC(dir, 'mountmany', MOUNTMANY_C);
    const banned = Buffer.concat([readFileSync('/bin/sleep'), Buffer.from(`\ntgmt-banned-${run}\n`)]);
    guardd = await startReadingGuardd(dir, 'tgmt', banned, [`tgmt-marker-A-${run}`, `tgmt-marker-B-${run}`]);
  }, 60_000);

  afterAll(async () => {
    await guardd?.stop('SIGKILL');
    await mount?.release();
    restoreFuse?.();
  });

  /** guardd's peak resident memory so far (kB). */
  const peakKb = (): number =>
    Number(/^VmHWM:\s*(\d+) kB$/m.exec(readFileSync(`/proc/${guardd.child.pid}/status`, 'utf8'))?.[1]);

  it('guardd reads a bounded part of the table and keeps answering; the program it cannot place runs unread (counted)', async () => {
    const before = await fuseExeStatus(guardd);
    const peakBefore = peakKb();
    mount = await mountAsUser(user, daemon, 'big', {
      populate: (src) => {
        const p = join(src, 'plain');
        copyFileSync('/bin/sleep', p);
        appendFileSync(p, `\ntgmt-plain-${run}\n`);
        chownSync(p, user.uid, user.gid);
        chmodSync(p, 0o755);
      },
      inOwnNamespace: {
        run: ['plain', '60'],
        wrap: [mountmany, String(MOUNTS), user.home],
      },
    });
    const pid = mount.pid as number;
    // guardd's reads of it end (refused: its mount is past what guardd reads of the table)
    let slowest = 0;
    const settled = await waitFor(
      async () => {
        const t = performance.now();
        const s = await fuseExeStatus(guardd).catch(() => undefined);
        slowest = Math.max(slowest, performance.now() - t);
        if (guardd.child.exitCode !== null || guardd.child.signalCode !== null)
          throw new Error(`guardd ended: ${guardd.output().slice(-2000)}`);
        return s && (s.unreadable ?? 0) >= (before.unreadable ?? 0) + 2 ? s : undefined;
      },
      'both reads of the program refused',
      { timeoutMs: 30_000 },
    );
    expect(settled.spawned).toBe(before.spawned);
    // the old code's two reads of the ~49 MB table raised guardd's peak by ~160 MB
    expect(peakKb() - peakBefore).toBeLessThan(48 * 1024);
    expect(slowest).toBeLessThan(2000);
    expect(alive(pid)).toBe(true);
    expect(guardd.child.exitCode).toBeNull();
  }, 90_000);
});
