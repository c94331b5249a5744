/**
 * File identity reused under coarse timestamps, attacked by a real unprivileged user against a real
 * root guardd with pre-exec deny (the execperm addon) and a sha256 rule. guardd caches what it learnt
 * about one version of a file — the native verdict cache's allow, the hash and marker caches the
 * pre-exec listener and the process sensor share — under its identity (device, inode, size, mtime,
 * ctime). Where ctime is coarse, a user can put other bytes into a file with the same identity: on
 * a file system whose timestamps count whole seconds (ext4 with 128-byte inodes, here a loop image
 * root mounts and hands the user a directory of), and the same within one tick (a jiffy) on ext4 or
 * xfs before Linux 6.13, or within FAT's 10 ms. The user runs a benign program (allowed, its hash
 * cached), overwrites it in place with the banned bytes of the same size within the same second,
 * sees with `stat` that nothing of its identity changed, and runs it again.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callDaemon } from '../../src/control/control-client.js';
import { type CoarseExt4, coarseExt4 } from '../helpers/coarse-ext4.js';
import { type Guardd, startDenyingGuardd } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';

const SLEEP = realpathSync('/bin/sleep');
const dir = tempDir('tgir-');
const TAG = randomBytes(4).toString('hex');
/** A copy of `sleep` with bytes appended: the banned hash, unique to this run. */
const BANNED = join(dir, `banned-${TAG}`);
/** The same size, other bytes appended: a program no rule names. */
const BENIGN = join(dir, `benign-${TAG}`);
const coarse = coarseExt4(dir);
let fs: CoarseExt4;
/** Attempts at landing the overwrite in the second of the benign file's creation (each ~10 ms). */
const TRIES = 40;

let user: TestUser;
let g: Guardd | undefined;

afterAll(async () => {
  await g?.stop();
  coarse.unmount();
});

describe('identity reuse on a file system with coarse timestamps (real guardd, real user)', () => {
  beforeAll(async () => {
    expect(process.getuid?.()).toBe(0);
    user = createTestUser('tgir');
    const tail = (): Buffer => randomBytes(64);
    writeFileSync(BANNED, Buffer.concat([readFileSync(SLEEP), tail()]));
    writeFileSync(BENIGN, Buffer.concat([readFileSync(SLEEP), tail()]));
    chmodSync(dir, 0o755);
    chmodSync(BANNED, 0o644);
    chmodSync(BENIGN, 0o644);
    fs = coarse.mount(user, 32); // whole-second timestamps
    const hash = createHash('sha256').update(readFileSync(BANNED)).digest('hex');
    const guardd = await startDenyingGuardd(dir, {
      id: `tgir-block-${TAG}`,
      name: 'tgir banned tool',
      action: 'block',
      message: 'tgir: not approved.',
      process: { sha256: [hash] },
    });
    g = guardd;
    const s = await callDaemon<{ exec_deny: { state: string; reason?: string; marked: string[] } }>(
      join(guardd.socketDir, 'guardd.sock'),
      'status',
    );
    expect(s.exec_deny, `exec_deny off: ${s.exec_deny.reason}`).toMatchObject({ state: 'on' });
    expect(s.exec_deny.marked).toContain(fs.mount);
  });

  it('the banned bytes written over an allowed program with the same identity are still refused', () => {
    const f = join(fs.home, 'tool');
    // Each try: a fresh benign program, run (allowed, its verdict and hash cached), overwritten in
    // place with the banned bytes; when `stat` shows the same identity, the banned bytes are run.
    const script = `
      i=0
      while [ $i -lt ${TRIES} ]; do
        i=$((i+1))
        rm -f "$F"; cp "$BENIGN" "$F"; chmod 755 "$F"
        a=$(stat -c '%d %i %s %.9Y %.9Z' "$F")
        "$F" 0 || { echo "benign=$?"; exit 0; }
        dd if="$BANNED" of="$F" conv=notrunc status=none
        b=$(stat -c '%d %i %s %.9Y %.9Z' "$F")
        if [ "$a" = "$b" ]; then
          echo "same=$i"
          "$F" 1
          echo "banned=$?"
          exit 0
        fi
      done
      echo "same=none"
    `;
    const r = spawnSync('sh', ['-c', script], {
      uid: user.uid,
      gid: user.gid,
      cwd: user.home,
      env: { PATH: '/usr/bin:/bin', HOME: user.home, F: f, BENIGN, BANNED },
      encoding: 'utf8',
      timeout: 60_000,
    });
    const out = Object.fromEntries(
      r.stdout
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => l.trim().split('=') as [string, string]),
    );
    // the attack itself worked: the banned bytes were in a file of the allowed one's identity
    expect(out, r.stderr).not.toHaveProperty('benign');
    expect(out.same, r.stderr).toMatch(/^\d+$/);
    // and they were refused before they ran (126: "Operation not permitted")
    expect(out.banned, r.stderr).toBe('126');
  });
});
