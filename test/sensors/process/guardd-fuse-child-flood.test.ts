/**
 * The owner-fs child that reads a program on a user's own FUSE mount runs as that user
 * (src/sensors/fuse-exe.ts), so its pipes are the user's too: they may open its stdout through
 * /proc/<pid>/fd/1 (no ptrace needed, whatever `kernel.yama.ptrace_scope` says) and write into
 * guardd's end. Found in review: a line of 64 MiB was accepted, re-scanned whole at every 64 KiB
 * read (~26 s of guardd's event loop for one such line), and the user's write end kept guardd
 * reading after the child was ended — a user's `head -c 128M /dev/zero | tr` froze guardd's
 * control socket and kills for as long as they liked. Real parts: guardd from dist with the unit's
 * heap cap, a real user, their FUSE daemon (fuse-passthrough.c) stalling guardd's reader so the
 * child stays, and the user's own shell finding the child and writing into it.
 */
import {
  appendFileSync,
  chmodSync,
  chownSync,
  closeSync,
  copyFileSync,
  ftruncateSync,
  openSync,
  readFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callDaemon } from '../../../src/control/control-client.js';
import { type Guardd, ruleEvents } from '../../helpers/daemon.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser, spawnAs, type TestUser } from '../../helpers/unix-user.js';
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

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

/** What the user's writes get once guardd has closed its end of the child's stdout. */
const CLOSED = /^(?:Broken pipe|Connection reset by peer)$/;

/**
 * The user's tool: takes a copy of `pid`'s stdout with pidfd_getfd(2) — what ptrace access to
 * one's own process allows (the child is the user's; no Yama restriction, or scope 0: Debian's and
 * Fedora's default) — and writes `bytes` of 'a' (`chars`) or of newlines (`lines`) into it, or
 * the one line `null` (`null`).
 * SIGPIPE ignored: it prints how far it got and the error that stopped it.
 */
const FLOOD_C = `
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  int pidfd = syscall(SYS_pidfd_open, atoi(argv[1]), 0);
  if (pidfd < 0) { printf("pidfd_open: %s\\n", strerror(errno)); return 3; }
  int fd = syscall(SYS_pidfd_getfd, pidfd, 1, 0);
  if (fd < 0) { printf("pidfd_getfd: %s\\n", strerror(errno)); return 3; }
  if (argv[3][0] == 'n') {
    ssize_t n = write(fd, "null\\n", 5);
    printf("wrote %zd: %s\\n", n, n == 5 ? "all" : strerror(errno));
    return 0;
  }
  long long want = atoll(argv[2]), done = 0;
  static char buf[65536];
  memset(buf, argv[3][0] == 'l' ? '\\n' : 'a', sizeof buf);
  while (done < want) {
    ssize_t n = write(fd, buf, sizeof buf);
    if (n < 0) { printf("wrote %lld: %s\\n", done, strerror(errno)); return 1; }
    done += n;
  }
  printf("wrote %lld: all\\n", done);
  return 0;
}
`;

/**
 * The user's script: finds their process reading for guardd (its command line holds the child's
 * `openFd` operation; the pattern is assembled so this shell's own command line does not hold it)
 * and runs the tool on it.
 */
function floodScript(tool: string, bytes: number, what: 'chars' | 'lines' | 'null'): string {
  return `
pat=open; pat="\${pat}Fd"
pid=
# the child is the user's once setpriv has run (before that, root's nice and prlimit): look again
for try in $(seq 200); do
  for p in /proc/[0-9]*; do
    [ -O "$p" ] || continue
    grep -qa "$pat" "$p/cmdline" 2>/dev/null && pid=\${p#/proc/}
  done
  [ -n "$pid" ] && break
  sleep 0.05
done
[ -n "$pid" ] || { echo "no child"; exit 3; }
exec ${tool} "$pid" ${bytes} ${what}
`;
}

describe.runIf(runnable)("a user writing into the stdout of guardd's reader on their FUSE mount", () => {
  const dir = tempDir('tgff-');
  const run = Date.now().toString(36);
  let user: TestUser;
  let guardd: Guardd;
  let daemon: string;
  let plain: UserMount;
  const mounts: UserMount[] = [];
  let restoreFuse: (() => void) | undefined;
  let tool: string;

  /** A copy of sleep with `trailer` appended, put in `m`'s source as `name` (the user's, 0755). */
  function place(m: UserMount, name: string, trailer: string): string {
    const p = join(m.src, name);
    copyFileSync('/bin/sleep', p);
    appendFileSync(p, trailer);
    chownSync(p, user.uid, user.gid);
    chmodSync(p, 0o755);
    return join(m.mnt, name);
  }

  const fuseStatus = (): Promise<Record<string, number>> => fuseExeStatus(guardd);

  /** The slowest of guardd's status answers (ms) while `running()` holds, 30 s at most. */
  async function slowestStatusWhile(running: () => boolean): Promise<number> {
    let slowest = 0;
    const started = performance.now();
    while (running() && performance.now() - started < 30_000) {
      const t = performance.now();
      // an answer later than 15 s counts as 15 s (the old code took ~26 s of work per 64 MiB)
      await callDaemon(join(guardd.socketDir, 'guardd.sock'), 'status', {}, 15_000).catch(() => undefined);
      slowest = Math.max(slowest, performance.now() - t);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return slowest;
  }

  /** Runs a copy of the banned program from the user's plain mount as `name`; waits for its kill (reason). */
  async function bannedKilled(name: string): Promise<string | undefined> {
    const child = spawnAs(
      user,
      place(
        plain,
        name,
        `
tgff-banned-${run}
`,
      ),
      ['60'],
    );
    const pid = child.pid as number;
    const event = await waitFor(
      () => ruleEvents(guardd, 'process.blocked', 'tgff-hash', 100).find((e) => e.pid === pid),
      `the banned program ${name} killed`,
    );
    return event.reason;
  }

  /**
   * Runs the user's flood against the reader of a program on the stalled mount; while it runs,
   * times guardd's status answers. The flood's output and the slowest answer (ms).
   */
  async function flood(name: string, bytes: number, what: 'chars' | 'lines' | 'null') {
    // opens after the exec's own are never answered: guardd's reader stays, waiting
    const stalled = await mountAsUser(user, daemon, name, { stallOpensAfter: 1 });
    mounts.push(stalled);
    const before = await fuseStatus();
    const slow = spawnAs(user, place(stalled, name, `\n${name}-${run}\n`), ['60']);
    // guardd's reader for it has started and waits on the daemon (which never answers it)
    await waitFor(
      async () => ((await fuseStatus()).spawned ?? 0) > (before.spawned ?? 0),
      "guardd's reader started",
    );
    const attacker = spawnAs(user, 'sh', ['-c', floodScript(tool, bytes, what)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    attacker.stdout?.on('data', (d) => {
      out += d;
    });
    attacker.stderr?.on('data', (d) => {
      out += d;
    });
    let ended = false;
    attacker.once('exit', () => {
      ended = true;
    });
    // bounded: on the old code the flood outlasts any sane wait (26 s of work per 64 MiB)
    const slowest = await slowestStatusWhile(() => !ended);
    if (!ended) attacker.kill('SIGKILL');
    slow.kill('SIGKILL');
    // the daemon gone, its pending request fails and the reader stuck on it ends
    await stalled.release();
    return { out, slowest, ended };
  }

  beforeAll(async () => {
    restoreFuse = await userFuse();
    chmodSync(dir, 0o755);
    user = createTestUser('tgff');
    daemon = buildPassthrough(dir);
    tool = compileC(dir, 'flood', FLOOD_C);
    plain = await mountAsUser(user, daemon, 'plain');
    const banned = Buffer.concat([readFileSync('/bin/sleep'), Buffer.from(`\ntgff-banned-${run}\n`)]);
    guardd = await startReadingGuardd(dir, 'tgff', banned, [`tgff-marker-A-${run}`, `tgff-marker-B-${run}`]);
  }, 60_000);

  afterAll(async () => {
    await guardd?.stop('SIGKILL');
    for (const m of mounts) await m.release();
    await plain?.release();
    restoreFuse?.();
  });

  it('a line of 128 MiB: guardd stops reading that child at its answer bound (the writer’s writes fail) and keeps answering', async () => {
    const { out, slowest, ended } = await flood('slow-a', 128 * 1024 * 1024, 'chars');
    expect(out).not.toContain('no child');
    expect(ended).toBe(true);
    // guardd closed its end far before the flood was through
    const [, copied, why] = /^wrote (\d+): (.*)$/m.exec(out) ?? [];
    // (EPIPE, or ECONNRESET when guardd closed its end with the flood's bytes unread)
    expect(why).toMatch(CLOSED);
    expect(Number(copied)).toBeLessThan(16 * 1024 * 1024);
    expect(slowest).toBeLessThan(2000);
    expect(guardd.child.exitCode).toBeNull();
  }, 60_000);

  it('a flood of empty lines: the first line that is no answer ends that child, and guardd keeps killing', async () => {
    const { out, slowest, ended } = await flood('slow-b', 64 * 1024 * 1024, 'lines');
    expect(out).not.toContain('no child');
    expect(ended).toBe(true);
    expect(/^wrote \d+: (.*)$/m.exec(out)?.[1]).toMatch(CLOSED);
    expect(slowest).toBeLessThan(2000);
    // a banned program on the user's other mount is still read and killed
    expect(await bannedKilled('banned')).toBe('sha256');
  }, 60_000);

  it('a program whose ELF section table claims 64 MiB: read from the user’s daemon 1 MiB at a time, guardd keeps answering, the program is scanned and killed', async () => {
    // sleep, its section headers said to be 1,024 of 65,535 bytes right after the ELF header, the
    // file made that long (sparse), and both markers at its end (a region the scan reads)
    const name = 'wide';
    const p = join(plain.src, name);
    copyFileSync('/bin/sleep', p);
    const fd = openSync(p, 'r+');
    const patch = Buffer.alloc(8);
    patch.writeBigUInt64LE(64n);
    writeSync(fd, patch, 0, 8, 0x28); // e_shoff
    const counts = Buffer.alloc(6);
    counts.writeUInt16LE(65535, 0); // e_shentsize
    counts.writeUInt16LE(1024, 2); // e_shnum
    counts.writeUInt16LE(0, 4); // e_shstrndx
    writeSync(fd, counts, 0, 6, 0x3a);
    ftruncateSync(fd, 64 + 1024 * 65535 + 4096);
    closeSync(fd);
    appendFileSync(p, `\ntgff-marker-A-${run}\ntgff-marker-B-${run}\n`);
    chownSync(p, user.uid, user.gid);
    chmodSync(p, 0o755);
    const child = spawnAs(user, join(plain.mnt, name), ['60']);
    const pid = child.pid as number;
    let ended = false;
    void waitFor(
      () => ruleEvents(guardd, 'process.blocked', 'tgff-content', 100).find((e) => e.pid === pid),
      'the wide program killed',
      { timeoutMs: 30_000 },
    )
      .catch(() => undefined)
      .finally(() => {
        ended = true;
      });
    const slowest = await slowestStatusWhile(() => !ended);
    const event = ruleEvents(guardd, 'process.blocked', 'tgff-content', 100).find((e) => e.pid === pid);
    child.kill('SIGKILL');
    expect(event?.reason).toBe('content');
    expect(slowest).toBeLessThan(2000);
  }, 60_000);

  it('the line `null`: that child is ended and guardd goes on (it threw out of the answer handler and exited)', async () => {
    const { out, ended } = await flood('slow-c', 5, 'null');
    expect(ended).toBe(true);
    expect(out).toContain('wrote 5: all');
    // guardd still answers and kills
    await fuseStatus();
    expect(guardd.child.exitCode).toBeNull();
    expect(await bannedKilled('banned-2')).toBe('sha256');
  }, 60_000);
});
