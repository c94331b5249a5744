/**
 * Attacks on kernel-cached allows (native/execperm ignore marks) by a real unprivileged user, with
 * the real addon in this process playing guardd: a tmpfs of root's is marked filesystem-wide, as
 * guardd marks every local file system (a superblock mark also covers a user's bind mounts of its
 * files in their own namespaces). The "policy" refuses a set of paths (a path or name rule).
 * Attacks: a refused program renamed by the user's own bind mount (in their user namespace, and in
 * a mount namespace root made for them), rewritten in place through a shared mapping; and the
 * check that keeps them out still lets the kernel cache a user's execs when guardd runs in a
 * mount namespace of its own, as under its systemd unit.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EXECPERM_ADDON_PATH,
  type ExecPermAddon,
  MOUNT_SKIP_RULES,
} from '../../src/enforcement/exec-deny.js';
import { waitSettled } from '../helpers/settled.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';
import { rootProgram, startDecidingListener } from './execperm-listener.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

describe.runIf(runnable)('kernel-cached allows under attack', () => {
  // A root-only directory (/var/lib is root's and 0755 all the way up), a tmpfs of its own.
  const root = `/var/lib/tgka-${randomBytes(4).toString('hex')}`;
  let addon: ExecPermAddon;
  let user: TestUser;
  let mounted = false;
  let refused: Set<string>;
  let asked: (path: string) => number;

  /** The user runs `script` with /bin/sh (its exit code); asynchronous: this loop answers the execs. */
  function shAs(script: string): Promise<{ code: number | null; out: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', script], {
        uid: user.uid,
        gid: user.gid,
        cwd: '/',
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: user.home },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, out }));
    });
  }

  beforeAll(() => {
    user = createTestUser('tgka');
    mkdirSync(root, { mode: 0o755 });
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'tgka', root], { encoding: 'utf8' });
    if (m.status !== 0) throw new Error(`mount tmpfs: ${m.stderr}`);
    mounted = true;
    ({ addon, refused, asked } = startDecidingListener());
    addon.mark(root, 'filesystem');
  });

  afterAll(() => {
    addon?.stop();
    if (mounted) spawnSync('umount', [root]);
    try {
      rmdirSync(root);
    } catch {
      // not created
    }
  });

  it("a program refused at its path, run twice under another name through the user's own bind mount, is still refused at its path", async () => {
    // root's banned program (a path/name rule: refused at this path), and a root-only decoy path.
    // Not named like a tool the test policies ban: another test's guardd on the machine would
    // refuse it first, and this listener would never be asked.
    const banned = rootProgram(join(root, 'opt', 'refused', 'bin', 'refused-tool'));
    refused.add(banned);
    const decoy = rootProgram(join(root, 'usr', 'bin', 'harmless'));
    await waitSettled(banned, decoy); // an allow is cached only then
    expect((await shAs(`"${banned}"`)).code).toBe(126);
    const added = addon.counters().ignore_marks_added;
    // in their own user and mount namespaces the user puts the banned file at the decoy's path
    // (guardd, reading the path of the exec'd file, is shown the namespace's path) and runs it
    // there three times: a decision, then cache hits.
    const ns = await shAs(
      `unshare -Urm sh -c 'mount --bind "${banned}" "${decoy}" && for i in 1 2 3; do "${decoy}" || exit 9; done; echo ran'`,
    );
    if (ns.out.includes('ran')) {
      // user namespaces are allowed on this machine: the attack ran
      expect(asked(decoy)).toBe(1); // guardd was shown the decoy's path: decided once, then from its cache
      expect(addon.counters().ignore_marks_added).toBe(added); // and never handed to the kernel
    } else {
      // a machine without unprivileged user namespaces refuses the attack itself
      expect(ns.out).toMatch(
        /unshare: .*(Operation not permitted|Permission denied|Invalid argument|No space left)/,
      );
    }
    // then, outside any namespace, at its real path: still asked, and still refused
    const before = asked(banned);
    expect((await shAs(`"${banned}"`)).code).toBe(126);
    expect(asked(banned)).toBe(before + 1);
  });

  it('the same, in a mount namespace root made for the user (a setuid sandbox: firejail, setuid bwrap)', async () => {
    const banned = rootProgram(join(root, 'opt', 'refused2', 'bin', 'refused-tool'));
    refused.add(banned);
    const decoy = rootProgram(join(root, 'usr', 'bin', 'harmless2'));
    await waitSettled(banned, decoy);
    const added = addon.counters().ignore_marks_added;
    // the user's process is in guardd's user namespace, and the bind mount is of its own mount
    // namespace: only the path's own check (it leads elsewhere here) stands in the way
    const runAs = `setpriv --reuid=${user.uid} --regid=${user.gid} --clear-groups`;
    const ns = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(
        'unshare',
        [
          '-m',
          '--propagation',
          'private',
          'sh',
          '-c',
          `mount --bind "${banned}" "${decoy}" && for i in 1 2 3; do ${runAs} "${decoy}" || exit 9; done`,
        ],
        { stdio: 'ignore' },
      );
      child.on('error', reject);
      child.on('close', resolve);
    });
    expect(ns).toBe(0);
    expect(addon.counters().ignore_marks_added).toBe(added);
    const before = asked(banned);
    expect((await shAs(`"${banned}"`)).code).toBe(126);
    expect(asked(banned)).toBe(before + 1);
  });

  it('on this file system a root-only program run at its own path is still left to the kernel', async () => {
    const p = rootProgram(join(root, 'usr', 'sbin', 'tool'));
    await waitSettled(p);
    for (let i = 0; i < 3; i++) expect((await shAs(`"${p}"`)).code).toBe(0);
    const before = asked(p);
    const t = new Date(Date.now() - 3_600_000);
    utimesSync(p, t, t); // a verdict-cache miss, not a write: only the kernel's mark keeps it unasked
    expect((await shAs(`"${p}"`)).code).toBe(0);
    expect(asked(p)).toBe(before);
  });

  it('a program root rewrites in place through a shared mapping (which raises no modify event) is asked about again once the writer closes it', async () => {
    const p = rootProgram(join(root, 'usr', 'libexec', 'tool'));
    await waitSettled(p);
    for (let i = 0; i < 3; i++) expect((await shAs(`"${p}"`)).code).toBe(0);
    const t = new Date(Date.now() - 3_600_000);
    utimesSync(p, t, t);
    const marked = asked(p);
    expect((await shAs(`"${p}"`)).code).toBe(0);
    expect(asked(p)).toBe(marked); // left to the kernel
    const dropped = addon.counters().ignore_marks_dropped;
    // root (a patcher, an installer) changes one byte of the section header table through mmap
    const w = spawnSync(
      '/usr/bin/python3',
      [
        '-c',
        'import mmap,os,sys\nfd=os.open(sys.argv[1],os.O_RDWR)\nm=mmap.mmap(fd,0)\nm[-1]=(m[-1]+1)%256\nm.close()\nos.close(fd)',
        p,
      ],
      { encoding: 'utf8' },
    );
    expect(w.stderr).toBe('');
    expect(w.status).toBe(0);
    // the writer's close is reported to guardd's thread, which takes the file back from the kernel
    await waitFor(() => addon.counters().ignore_marks_dropped > dropped, 'the kernel-cached allow dropped');
    const before = asked(p);
    expect((await shAs(`"${p}"`)).code).toBe(0);
    expect(asked(p)).toBe(before + 1);
  });

  it("with guardd in a mount namespace of its own (systemd's ProtectSystem=), a user's execs in the machine's are still left to the kernel", async () => {
    const p = rootProgram(join(root, 'usr', 'bin', 'served'));
    await waitSettled(p);
    // A second listener, in `unshare -m` (a copy of this namespace, other mount ids), as guardd
    // runs under its unit: it allows everything and prints its counters on each line it reads.
    const harness = [
      'const a = require(process.argv[1]);',
      `a.start({ deadlineMs: 300, skipFstypes: ${JSON.stringify(MOUNT_SKIP_RULES)} }, (ev) => { if (ev.kind === 'decide') a.respond(ev.id, true, true); });`,
      "a.mark(process.argv[2], 'filesystem');",
      "process.stdin.on('data', () => process.stdout.write(JSON.stringify(a.counters()) + '\\n'));",
      "process.stdin.on('end', () => { a.stop(); process.exit(0); });",
      "process.stdout.write('ready\\n');",
    ].join('\n');
    const svc = spawn(
      'unshare',
      ['-m', '--propagation', 'slave', process.execPath, '-e', harness, EXECPERM_ADDON_PATH, root],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    try {
      const lines: string[] = [];
      svc.stdout.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
      await waitFor(() => lines.includes('ready'), 'the listener in its own namespace');
      const counters = async (): Promise<{ events: number; ignore_marks_added: number }> => {
        const n = lines.length;
        svc.stdin.write('\n');
        await waitFor(() => lines.length > n, 'its counters');
        return JSON.parse(lines[lines.length - 1] ?? '{}');
      };
      for (let i = 0; i < 3; i++) expect((await shAs(`"${p}"`)).code).toBe(0);
      const marked = await counters();
      expect(marked.ignore_marks_added).toBe(1);
      const t = new Date(Date.now() - 3_600_000);
      utimesSync(p, t, t); // a verdict-cache miss, not a write
      expect((await shAs(`"${p}"`)).code).toBe(0);
      expect((await counters()).events).toBe(marked.events); // the kernel did not ask it
    } finally {
      svc.stdin.end();
    }
  });
});
