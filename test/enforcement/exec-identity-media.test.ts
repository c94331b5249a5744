/**
 * File identity on a file system whose device a user can write, attacked by a real unprivileged
 * user against a real root guardd with a sha256 rule. guardd caches what it learnt about one
 * version of a program — the native verdict cache's allow, the hash cache the pre-exec listener
 * and the process sensor share — under its identity (device, inode, size, mtime, ctime), which
 * holds only for changes made through the file system. On an ext4 image the user owns (mounted for
 * them by root, as udisks does: its own loop device, nosuid,nodev), the user can change a
 * program's bytes in the image itself: its blocks rewritten while the image is unmounted, or
 * while it is mounted and the program's pages evicted, or a crafted image with the same inode
 * numbers and timestamps attached to the loop device a root image had. The kernel's file system
 * sees no write; device, inode, size, mtime and ctime stay as they were (each case checks with
 * `stat`, on the same /dev/loopN, and that the program now reads as the banned bytes). The
 * benign program ran settled (cached) first; the banned bytes must still be refused — before exec
 * by pre-exec deny, or killed after exec by the process sensor with pre-exec deny off.
 * Found in review of the fix: the user's image held open in a tmpfs over /etc in a namespace of
 * theirs, attached from their descriptor, read as root's /etc/passwd (the kernel names a backing
 * file by its path where it was opened) and was cached; the raw write while mounted ran the
 * banned bytes (needs unshare, util-linux, and unprivileged user namespaces).
 *
 * Root does what udisks would do for the user (losetup, mount, umount); the user does every
 * step of the attack (runs the programs, finds the blocks with debugfs, writes them with dd).
 * Needs losetup (util-linux), mkfs.ext4, debugfs, dumpe2fs (e2fsprogs) and python3.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callDaemon } from '../../src/control/control-client.js';
import type { PolicyRule } from '../../src/policy/policy-types.js';
import {
  type Guardd,
  makeKey,
  policyBody,
  startDenyingGuardd,
  startGuardd,
  writeSignedPolicy,
} from '../helpers/daemon.js';
import { attachLoopFromFd } from '../helpers/loop-fd.js';
import { waitSettled } from '../helpers/settled.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, holdInUserNamespace, spawnAs, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';

const SLEEP = realpathSync('/bin/sleep');
const dir = realpathSync(tempDir('tgim-'));
const TAG = randomBytes(4).toString('hex');
/** A copy of `sleep` with bytes appended: the banned hash, unique to this run. */
const BANNED = join(dir, `banned-${TAG}`);
/** The same size, other bytes appended: a program no rule names. */
const BENIGN = join(dir, `benign-${TAG}`);
const RULE_ID = `tgim-block-${TAG}`;
const USER_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

let user: TestUser;
let hash: string;
let g: Guardd | undefined;

/** Mount points mounted and loop devices attached by this file (with their image): undone in afterAll. */
const mounted = new Set<string>();
const attached = new Map<string, string>();

/** The user's programs started in the background, killed first: a running one keeps its mount busy. */
const running = new Set<ChildProcess>();

afterAll(async () => {
  for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(
    [...running].map((c) =>
      c.exitCode === null && c.signalCode === null ? new Promise((res) => c.once('exit', res)) : undefined,
    ),
  );
  await g?.stop();
  g = undefined;
  for (const m of mounted) {
    // lazily if still busy: the temp dir's removal must not find the mounted file system below it
    if (spawnSync('umount', [m]).status !== 0) spawnSync('umount', ['-l', m]);
  }
  mounted.clear();
  for (const [dev, img] of attached) {
    // only while it still holds our image: the number may be another's by now
    const back = spawnSync('losetup', ['-n', '-O', 'BACK-FILE', dev], { encoding: 'utf8' }).stdout.trim();
    if (back === img) spawnSync('losetup', ['-d', dev]);
  }
  attached.clear();
});

function mkdirP(d: string): string {
  mkdirSync(d, { recursive: true });
  return d;
}

/** Runs `args` as root; fails the test with its stderr unless it exits 0. Resolves its stdout. */
function root(args: string[]): string {
  const [cmd, ...rest] = args as [string, ...string[]];
  const r = spawnSync(cmd, rest, { encoding: 'utf8' });
  expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout.trim();
}

/** Runs a shell script as the user; its stdout's `key=value` lines. */
function asUser(script: string, env: Record<string, string> = {}): Record<string, string> {
  const r = spawnSync('sh', ['-c', script], {
    uid: user.uid,
    gid: user.gid,
    cwd: user.home,
    env: { PATH: USER_PATH, HOME: user.home, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  const out: Record<string, string> = { stderr: r.stderr, status: String(r.status) };
  for (const line of r.stdout.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 1);
  }
  return out;
}

/** The user runs `prog 0`: its exit code (0: `sleep 0` ran; 126: the exec was refused). */
function run(prog: string): string {
  const out = asUser('"$P" 0; echo "code=$?"', { P: prog });
  return out.code ?? `none (${out.stderr})`;
}

/** What `stat` says of the file's identity (device, inode, size, mtime, ctime), as the user sees it. */
function identity(path: string): string {
  const out = asUser(`echo "id=$(stat -c '%d %i %s %.9Y %.9Z' "$F")"`, { F: path });
  expect(out.id, out.stderr).toMatch(/^\d+ \d+ \d+ \d+\.\d+ \d+\.\d+$/);
  return out.id as string;
}

/** The user drops the file's clean pages (posix_fadvise DONTNEED, as any reader may): the next read goes to the device. */
function evictAsUser(p: string): void {
  const ev = asUser(
    `python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)' "$P" && echo ok=1`,
    { P: p },
  );
  expect(ev.ok, ev.stderr).toBe('1');
}

/** The file's SHA-256 as the user reads it through the mount. */
function sha256AsUser(path: string): string {
  const out = asUser('echo "sum=$(sha256sum < "$F" | cut -d" " -f1)"', { F: path });
  return out.sum ?? '';
}

/** An ext4 image on its own loop device, mounted for a user's directory. */
interface Medium {
  readonly image: string;
  readonly dev: string;
  readonly mount: string;
  /** `<mount>/home`, the user's directory on it. */
  readonly home: string;
  /** A root-owned copy of the banned program on it: refused once guardd has marked the mount. */
  readonly probe: string;
}

/** Attaches `image` to a free loop device (`dev` undefined) or to `dev` again; resolves the device. */
async function attach(image: string, dev?: string): Promise<string> {
  if (dev === undefined) {
    const got = root(['losetup', '-f', '--show', image]);
    attached.set(got, image);
    return got;
  }
  // the device may still be on its way out of its last attachment (a prober holding it open)
  await waitFor(
    () => spawnSync('losetup', [dev, image], { encoding: 'utf8' }).status === 0,
    `${image} attached to ${dev} again`,
  );
  attached.set(dev, image);
  return dev;
}

function mountOn(dev: string, mount: string): void {
  mkdirSync(mount, { recursive: true, mode: 0o755 });
  root(['mount', '-o', 'nosuid,nodev', dev, mount]);
  mounted.add(mount);
}

/** Who holds a file under `mount` open (pid, comm, path), from /proc: for a busy umount's message. */
function holders(mount: string): string {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (target.startsWith(`${mount}/`))
          found.push(`${pid} ${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()} ${target}`);
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return found.join('; ') || 'none now';
}

/** Processes whose mount namespace still has the file system of loop device `dev` mounted. */
function namespaceHolders(dev: string): string {
  const rdev = statSync(dev).rdev;
  const id = `${Math.floor(rdev / 256) & 0xfff}:${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}`;
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (
        readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
          .split('\n')
          .some((l) => l.split(' ')[2] === id)
      )
        found.push(`${pid} ${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()}`);
    } catch {
      // gone, or not ours to read
    }
  }
  return found.join('; ') || 'none now';
}

/**
 * Unmounts the medium and detaches its loop device, and waits until the device is really let go.
 * guardd may hold the program it just saw run open for a moment (a pre-exec event's descriptor,
 * or the post-exec hash's open), and umount says busy meanwhile, as it would for udisks: it is
 * asked again until those are let go. And a mount namespace another test file's process made
 * while the medium was mounted (`unshare -m`) holds a copy of the mount: umount here succeeds, yet
 * the file system stays mounted there, its last writes not in the image (debugfs then did not find
 * /home/P in it), and `losetup -d` only marks the device to go when the last user does — so the
 * image is used once the device is gone, which says the file system was unmounted everywhere.
 */
async function unmountAndDetach(m: Medium): Promise<void> {
  let last = '';
  await waitFor(
    () => {
      const r = spawnSync('umount', [m.mount], { encoding: 'utf8' });
      last = `${r.stderr.trim()} (holders: ${holders(m.mount)})`;
      return r.status === 0;
    },
    `${m.mount} unmounted`,
    { timeoutMs: 10_000, intervalMs: 50 },
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${last}`);
  });
  mounted.delete(m.mount);
  root(['losetup', '-d', m.dev]);
  attached.delete(m.dev);
  const backing = `/sys/block/${basename(m.dev)}/loop/backing_file`;
  await waitFor(() => !existsSync(backing), `${m.dev} let go by every mount namespace`, {
    timeoutMs: 60_000,
    intervalMs: 50,
  }).catch((err: Error) => {
    throw new Error(`${err.message}: still mounted by ${namespaceHolders(m.dev)}`);
  });
}

/**
 * A new ext4 image at `image` (made by root, then handed to `owner` 0600 when given), attached to
 * a free loop device and mounted at `<dir>/<name>`, with the user's `home` and root's probe on it.
 */
async function newMedium(name: string, image: string, owner: TestUser | null): Promise<Medium> {
  writeFileSync(image, '');
  chmodSync(image, 0o600);
  // inode tables and journal written now: no kernel thread zeroing them later, while the user reads the image
  const eager = 'lazy_itable_init=0,lazy_journal_init=0';
  const mk = spawnSync('mkfs.ext4', ['-q', '-F', '-E', eager, image, '32M'], { encoding: 'utf8' });
  expect(mk.status, mk.stderr).toBe(0);
  if (owner) chownSync(image, owner.uid, owner.gid);
  return mountMedium(image, await attach(image), name);
}

/** The file system on loop device `dev` mounted at `<dir>/media/<name>`, with the user's `home` and root's probe on it. */
function mountMedium(image: string, dev: string, name: string): Medium {
  const mount = join(dir, 'media', name);
  mountOn(dev, mount);
  const home = join(mount, 'home');
  mkdirSync(home, { mode: 0o755 });
  chownSync(home, user.uid, user.gid);
  const probe = join(mount, 'probe');
  copyFileSync(BANNED, probe);
  chmodSync(probe, 0o755);
  return { image, dev, mount, home, probe };
}

/** Waits until guardd asks about execs on the medium's file system (its probe refused). */
async function waitMarked(m: Medium): Promise<void> {
  await waitFor(() => run(m.probe) === '126', `${m.mount} marked (its probe refused)`, {
    timeoutMs: 30_000,
    intervalMs: 200,
  });
}

/** A directory of the user's, 0700, for their images. */
function userDir(name: string): string {
  const d = join(user.home, name);
  const out = asUser('mkdir -m 700 "$D" && echo ok=1', { D: d });
  expect(out.ok, out.stderr).toBe('1');
  return d;
}

/**
 * The user writes the banned bytes into the blocks of `inFs` (a path inside the file system) in
 * their image, found with debugfs: the file system's inode is not touched.
 */
function writeBlocksAsUser(image: string, inFs: string): void {
  const out = asUser(
    `set -e
    bs=$(dumpe2fs -h "$IMG" | sed -n 's/^Block size: *//p')
    blocks=$(debugfs -R "blocks $IN" "$IMG")
    n=0
    for b in $blocks; do
      dd if="$SRC" of="$IMG" bs="$bs" skip=$n seek=$b count=1 conv=notrunc status=none
      n=$((n+1))
    done
    echo "bs=$bs"; echo "n=$n"`,
    { IMG: image, IN: inFs, SRC: BANNED },
  );
  expect(out.status, out.stderr).toBe('0');
  // every byte of the program had a block to go to
  expect(Number(out.n) * Number(out.bs), out.stderr).toBeGreaterThanOrEqual(readFileSync(BANNED).length);
}

/** The stored events of `type` for the program at `exe`, through guardd's control socket. */
async function eventsFor(exe: string, type: string): Promise<Record<string, unknown>[]> {
  const r = await callDaemon<{ events: { event: Record<string, unknown> }[] }>(
    join((g as Guardd).socketDir, 'guardd.sock'),
    'events.list',
    { type, limit: 5000 },
  );
  return r.events.map((e) => e.event).filter((e) => e.exe === exe);
}

/** The exec of `prog` refused before it ran (126), and its process.denied event recorded. */
async function expectRefused(prog: string): Promise<void> {
  expect(run(prog), 'the banned bytes ran (exit 0) instead of being refused (126)').toBe('126');
  await waitFor(
    async () => (await eventsFor(prog, 'process.denied')).length > 0,
    `process.denied for ${prog}`,
  );
}

/**
 * The user's benign program P on a medium of theirs, run twice once settled (its allow and hash
 * cached): resolves the medium, P, and P's identity.
 */
async function userProgram(name: string, marked: boolean): Promise<{ m: Medium; p: string; id: string }> {
  const m = await newMedium(name, join(userDir(`${name}-img`), `${name}.img`), user);
  if (marked) await waitMarked(m);
  const p = join(m.home, 'P');
  const cp = asUser('cp "$SRC" "$P" && chmod 755 "$P" && echo ok=1', { SRC: BENIGN, P: p });
  expect(cp.ok, cp.stderr).toBe('1');
  await waitSettled(p);
  expect(run(p)).toBe('0');
  expect(run(p)).toBe('0');
  return { m, p, id: identity(p) };
}

/** Offline edit: P's blocks rewritten in the user's image while it is unmounted, then remounted. */
async function offlineEdit(name: string, marked: boolean): Promise<{ m: Medium; p: string }> {
  const { m, p, id } = await userProgram(name, marked);
  await unmountAndDetach(m);
  writeBlocksAsUser(m.image, '/home/P');
  await attach(m.image, m.dev);
  mountOn(m.dev, m.mount);
  if (marked) await waitMarked(m);
  // the same device, inode, size, mtime and ctime — and the banned bytes behind them
  expect(identity(p)).toBe(id);
  expect(sha256AsUser(p)).toBe(hash);
  return { m, p };
}

beforeAll(() => {
  expect(process.getuid?.()).toBe(0);
  user = createTestUser('tgim');
  const tail = (): Buffer => randomBytes(64);
  writeFileSync(BANNED, Buffer.concat([readFileSync(SLEEP), tail()]));
  writeFileSync(BENIGN, Buffer.concat([readFileSync(SLEEP), tail()]));
  chmodSync(dir, 0o755);
  chmodSync(BANNED, 0o644);
  chmodSync(BENIGN, 0o644);
  hash = createHash('sha256').update(readFileSync(BANNED)).digest('hex');
});

/** The block rule on the banned bytes' hash. */
const rule = (): PolicyRule => ({
  id: RULE_ID,
  name: 'tgim banned tool',
  action: 'block',
  message: 'tgim: not approved.',
  process: { sha256: [hash] },
});

describe('pre-exec deny on a file system whose device the user can write (real guardd, real user)', () => {
  beforeAll(async () => {
    g = await startDenyingGuardd(mkdirP(join(dir, 'g-deny')), rule());
    const s = await callDaemon<{ exec_deny: { state: string; reason?: string } }>(
      join(g.socketDir, 'guardd.sock'),
      'status',
    );
    expect(s.exec_deny, `exec_deny off: ${s.exec_deny.reason}`).toMatchObject({ state: 'on' });
  });
  afterAll(async () => {
    await g?.stop();
    g = undefined;
  });

  it("offline edit: P's blocks rewritten in the user's unmounted image, remounted on the same loop device", async () => {
    const { p } = await offlineEdit('off', true);
    await expectRefused(p);
  });

  it("raw write while mounted: P's blocks rewritten in the image under the mount, its pages evicted", async () => {
    const { m, p, id } = await userProgram('raw', true);
    // P's blocks allocated and written to the image before the user looks them up
    const s = asUser('sync -f "$P" && echo ok=1', { P: p });
    expect(s.ok, s.stderr).toBe('1');
    writeBlocksAsUser(m.image, '/home/P');
    // P's cached pages dropped (clean, unmapped): the next read goes through the loop device to
    // the image file, whose page cache has the user's write
    evictAsUser(p);
    expect(identity(p)).toBe(id);
    expect(sha256AsUser(p)).toBe(hash);
    await expectRefused(p);
  });

  it("the user's image, named by root's file's path in the user's namespace, attached from their descriptor: raw write while mounted", async () => {
    // The user's image, copied into a tmpfs they mounted over /etc in a namespace of theirs and
    // held open there; root attaches their descriptor (LOOP_SET_FD, as udisks attaches the one a
    // user hands it) and mounts it for them. The kernel names its backing file
    // /etc/passwd — root's alone here.
    const src = join(userDir('ns-img'), 'ns.img');
    writeFileSync(src, '');
    const mk = spawnSync('mkfs.ext4', ['-q', '-F', src, '32M'], { encoding: 'utf8' });
    expect(mk.status, mk.stderr).toBe(0);
    chownSync(src, user.uid, user.gid);
    chmodSync(src, 0o600);
    const holder = await holdInUserNamespace(
      user,
      'mount -t tmpfs t /etc && cat "$IMG" > /etc/passwd && exec 3</etc/passwd && echo ready && exec sleep 600',
      "the user's image held open in their namespace",
      { IMG: src },
    );
    running.add(holder);
    const image = `/proc/${holder.pid}/fd/3`;
    const dev = attachLoopFromFd(image, 'rw');
    try {
      await nsImageRun(holder, image, dev);
    } finally {
      const mount = join(dir, 'media', 'ns');
      if (mounted.delete(mount) && spawnSync('umount', [mount]).status !== 0)
        spawnSync('umount', ['-l', mount]);
      spawnSync('losetup', ['-d', dev]);
    }
  });

  /** The rest of the case above, on the user's image attached at `dev`. */
  async function nsImageRun(holder: ChildProcess, image: string, dev: string): Promise<void> {
    expect(readFileSync(`/sys/block/${dev.slice('/dev/'.length)}/loop/backing_file`, 'utf8').trim()).toBe(
      '/etc/passwd',
    );
    const medium = mountMedium(image, dev, 'ns');
    const { home } = medium;
    await waitMarked(medium);
    const p = join(home, 'P');
    const cp = asUser('cp "$SRC" "$P" && chmod 755 "$P" && sync -f "$P" && echo ok=1', { SRC: BENIGN, P: p });
    expect(cp.ok, cp.stderr).toBe('1');
    await waitSettled(p);
    expect(run(p)).toBe('0');
    expect(run(p)).toBe('0');
    const id = identity(p);
    writeBlocksAsUser(image, '/home/P');
    evictAsUser(p);
    expect(identity(p)).toBe(id);
    expect(sha256AsUser(p)).toBe(hash);
    await expectRefused(p);
    expect(holder.exitCode).toBe(null);
  }

  it("device number reused: a byte copy of root's image, its program's blocks rewritten by the user, attached in its place", async () => {
    const rootDir = join(dir, 'root-only');
    mkdirSync(rootDir, { mode: 0o700 });
    const m = await newMedium('dev', join(rootDir, 'root.img'), null);
    await waitMarked(m);
    const r = join(m.mount, 'R');
    copyFileSync(BENIGN, r);
    chmodSync(r, 0o755);
    await waitSettled(r);
    expect(run(r)).toBe('0');
    expect(run(r)).toBe('0');
    const id = identity(r);
    await unmountAndDetach(m);
    // the user's image: the same bytes (inode numbers, timestamps), theirs to write
    const b = join(userDir('dev-img'), 'b.img');
    copyFileSync(m.image, b);
    chownSync(b, user.uid, user.gid);
    chmodSync(b, 0o600);
    writeBlocksAsUser(b, '/R');
    await attach(b, m.dev);
    mountOn(m.dev, m.mount);
    await waitMarked(m);
    expect(identity(r)).toBe(id);
    expect(sha256AsUser(r)).toBe(hash);
    await expectRefused(r);
  });
});

describe('the post-exec kill on a file system whose device the user can write (real guardd, real user)', () => {
  beforeAll(async () => {
    // pre-exec deny off (startGuardd's default), exec events on: only the process sensor decides
    const key = makeKey();
    const policy = writeSignedPolicy(
      join(mkdirP(join(dir, 'g-post')), 'policy.dsse.json'),
      policyBody([rule()], { version: 3, mode: 'enforce' }),
      key,
    );
    g = await startGuardd(join(dir, 'g-post', 'guardd'), {
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policy,
      'enforcement.exec_deny': 'off',
    });
  });
  afterAll(async () => {
    await g?.stop();
    g = undefined;
  });

  it('offline edit, remount: the banned P is killed after exec (process.blocked), not left to run', async () => {
    const { p } = await offlineEdit('post', false);
    const child = spawnAs(user, p, ['30']);
    running.add(child);
    const exited = new Promise<NodeJS.Signals | null>((res) => child.once('exit', (_c, sig) => res(sig)));
    const blocked = await waitFor(
      async () => {
        const found = await eventsFor(p, 'process.blocked');
        return found.length > 0 ? found : undefined;
      },
      `process.blocked for ${p} (the banned bytes running as \`P 30\`)`,
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    expect(blocked[0]).toMatchObject({ pid: child.pid });
    expect(await exited).toBe('SIGKILL');
  });
});
