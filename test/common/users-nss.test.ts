/**
 * Users and groups come from NSS, not only /etc/passwd: a user and a group served by a real NSS
 * module (libnss-extrausers, installed by .ci/system-deps.sh) — absent from /etc/passwd and
 * /etc/group — are resolved by UserDirectory (name, home, groups), their home is found, and a
 * real root guardd applies a group exception to that user's process and scans that user's home
 * once its background read of the user list ended (the first discovery ran before it).
 *
 * /etc/nsswitch.conf gets `extrausers` appended to its passwd and group lines for this file only
 * (other test files run at the same time: the edit only adds a source after the existing ones) and
 * is put back byte for byte afterwards; /var/lib/extrausers gets this file's lines, removed after.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NSS_MAX_CONCURRENT_LOOKUPS, NSS_MAX_QUEUED_LOOKUPS, UserDirectory } from '../../src/common/users.js';
import {
  type Guardd,
  makeKey,
  policyBody,
  ruleEvents,
  startGuardd,
  writeSignedPolicy,
} from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';

const NSSWITCH = '/etc/nsswitch.conf';
const EXTRA_DIR = '/var/lib/extrausers';
const hex = randomBytes(3).toString('hex');
const NAME = `tgclx${hex}`;
const GROUP = `tgclg${hex}`;
// High ids no local user or group of this machine uses (checked in beforeAll).
const UID = 61_000 + (randomBytes(2).readUInt16BE() % 3000);
const GID = UID;
const HOME = `/home/${NAME}`;
const BANNED = `tgcl-nss-${hex}`;
const PACKAGE = `tgcl-nss-pkg-${hex}`;
/** A global npm root in the NSS user's home: found only if that home is discovered through NSS. */
const PACKAGE_DIR = `${HOME}/.npm-global/lib/node_modules/${PACKAGE}`;

const dir = tempDir('tgcl-nss-');
chmodSync(dir, 0o755);
let originalNsswitch: string;
let ourNsswitch: string;
const addedLines = new Map<string, string>(); // extrausers file → the line this file added
const createdExtraFiles: string[] = [];
let guardd: Guardd;
let localUser: TestUser;

/** Appends `extrausers` to the `db:` line of nsswitch.conf text (no-op when it is there). */
function withExtrausers(text: string, db: string): string {
  return text.replace(new RegExp(`^(${db}:[^\\n]*)$`, 'm'), (line) =>
    /\bextrausers\b/.test(line) ? line : `${line} extrausers`,
  );
}

/** Replaces `file` atomically with `text`, keeping its mode. */
function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tgcl-${hex}`;
  writeFileSync(tmp, text, { mode: statSync(file).mode & 0o7777 });
  renameSync(tmp, file);
}

function addExtraLine(file: string, line: string): void {
  const path = join(EXTRA_DIR, file);
  if (!existsSync(path)) {
    writeFileSync(path, '', { mode: 0o644 });
    createdExtraFiles.push(path);
  }
  writeFileSync(path, `${line}\n`, { flag: 'a' });
  addedLines.set(path, line);
}

beforeAll(async () => {
  expect(process.getuid?.(), 'needs root: it edits /etc/nsswitch.conf and starts a root guardd').toBe(0);
  expect(
    existsSync('/usr/lib/libnss_extrausers.so.2') ||
      existsSync('/usr/lib/x86_64-linux-gnu/libnss_extrausers.so.2') ||
      existsSync('/lib/x86_64-linux-gnu/libnss_extrausers.so.2'),
    'libnss-extrausers is not installed: run .ci/system-deps.sh',
  ).toBe(true);
  const passwd = readFileSync('/etc/passwd', 'utf8');
  expect(passwd).not.toMatch(new RegExp(`^[^:]*:[^:]*:${UID}:`, 'm'));

  mkdirSync(EXTRA_DIR, { recursive: true, mode: 0o755 });
  addExtraLine('passwd', `${NAME}:x:${UID}:${GID}:toolguard NSS test:${HOME}:/bin/sh`);
  addExtraLine('group', `${GROUP}:x:${GID}:${NAME}`);
  mkdirSync(PACKAGE_DIR, { recursive: true, mode: 0o755 });
  writeFileSync(join(PACKAGE_DIR, 'package.json'), JSON.stringify({ name: PACKAGE, version: '1.0.0' }));
  // chown by number: the whole point is that only NSS knows the name
  for (let d = PACKAGE_DIR; d !== '/home'; d = dirname(d)) chownSync(d, UID, GID);
  chownSync(join(PACKAGE_DIR, 'package.json'), UID, GID);

  originalNsswitch = readFileSync(NSSWITCH, 'utf8');
  ourNsswitch = withExtrausers(withExtrausers(originalNsswitch, 'passwd'), 'group');
  writeAtomic(NSSWITCH, ourNsswitch);
  localUser = createTestUser('tgcl');
}, 60_000);

afterAll(async () => {
  await guardd?.stop();
  // Put nsswitch.conf back exactly; if someone else changed it meanwhile, take out only our word.
  const now = readFileSync(NSSWITCH, 'utf8');
  if (now === ourNsswitch) writeAtomic(NSSWITCH, originalNsswitch);
  else if (now !== originalNsswitch)
    writeAtomic(NSSWITCH, now.replace(/^((?:passwd|group):[^\n]*) extrausers$/gm, '$1'));
  for (const [path, line] of addedLines) {
    if (createdExtraFiles.includes(path)) rmSync(path, { force: true });
    else writeFileSync(path, readFileSync(path, 'utf8').replace(`${line}\n`, ''));
  }
  rmSync(HOME, { recursive: true, force: true });
});

describe('users and groups from NSS', () => {
  it('resolves a user only NSS knows: name, home, groups, and counts their home', async () => {
    expect(readFileSync('/etc/passwd', 'utf8')).not.toContain(NAME);
    const users = new UserDirectory({ platform: 'linux' });
    // Not known yet: the lookup runs in the background, and settle() waits for it.
    expect(users.owner(UID).user).toBeNull();
    const wait = users.settle(UID, 10_000);
    expect(wait).not.toBeNull();
    await wait;
    expect(users.settle(UID, 10_000)).toBeNull();
    expect(users.owner(UID)).toEqual({ uid: UID, user: NAME, groups: [GROUP], home: HOME });
    // The list of users is NSS's once its first background round ended.
    await users.settleUsers(10_000);
    expect(users.users().find((u) => u.uid === UID)).toMatchObject({ name: NAME, home: HOME });
    // a local user resolves at once from the files (no wait), with their primary group
    expect(users.settle(localUser.uid, 10_000)).toBeNull();
    expect(users.owner(localUser.uid)).toMatchObject({ user: localUser.name, home: localUser.home });
    expect(users.owner(localUser.uid).groups).toContain(localUser.name);
    // an unknown uid is unnamed (and cached negatively, not an error)
    await users.settle(59_999, 10_000);
    expect(users.owner(59_999)).toEqual({ uid: 59_999, user: null, groups: [], home: null });
    expect(users.settle(59_999, 10_000)).toBeNull();
  });

  it("never looks a uid up on the caller's time: a flood of unknown uids is queued, bounded, and answered later", async () => {
    const users = new UserDirectory({ platform: 'linux' });
    const base = 3_000_000_000 + (randomBytes(2).readUInt16BE() << 8);
    // 1,000 processes under uids no directory knows (a user's subuid range): every owner() answers
    // at once — not one lookup can have finished inside this synchronous loop.
    for (let i = 0; i < 1000; i++) expect(users.owner(base + i).user).toBeNull();
    const c = users.nssCounts();
    expect(c).not.toBeNull();
    expect(c?.completed).toBe(0);
    expect(c?.lookups).toBeLessThanOrEqual(NSS_MAX_QUEUED_LOOKUPS + NSS_MAX_CONCURRENT_LOOKUPS);
    expect(c?.dropped).toBeGreaterThanOrEqual(1000 - NSS_MAX_QUEUED_LOOKUPS - NSS_MAX_CONCURRENT_LOOKUPS);
    // …and they drain: the queued ones are answered (unknown) in the background.
    await waitFor(() => users.nssCounts()?.pending === 0, 'the queued lookups drained', {
      timeoutMs: 120_000,
    });
    expect(users.nssCounts()?.completed).toBe(c?.lookups);
  });

  it('the files reader alone (the old behaviour) does not know that user', () => {
    const files = new UserDirectory({
      platform: 'linux',
      passwdFile: '/etc/passwd',
      groupFile: '/etc/group',
    });
    expect(files.owner(UID).user).toBeNull();
  });

  it('a real guardd applies a group exception to the NSS user, blocks everyone else, and scans their home', async () => {
    const key = makeKey();
    const policyFile = writeSignedPolicy(
      join(dir, 'policy.json'),
      policyBody(
        [
          {
            id: 'tgcl-nss-block',
            name: 'banned',
            action: 'block',
            message: 'no',
            process: { names: [BANNED] },
          },
          // the same program, audited: what the excepted user's process falls through to
          {
            id: 'tgcl-nss-pkg',
            name: 'package in a directory user home',
            action: 'audit',
            message: 'seen',
            packages: [{ ecosystem: 'npm', name: PACKAGE, range: '*' }],
          },
          {
            id: 'tgcl-nss-audit',
            name: 'seen',
            action: 'audit',
            message: 'seen',
            process: { names: [BANNED] },
          },
        ],
        {
          exceptions: [
            {
              rule: 'tgcl-nss-block',
              groups: [GROUP],
              expires_at: new Date(Date.now() + 7 * 86_400_000).toISOString(),
            },
          ],
        },
      ),
      key,
    );
    // An enumeration that takes 1 s (a slow directory): guardd's first discovery has only
    // /etc/passwd's users, and the NSS user's home is scanned once the user directory's background
    // read ended and said the homes changed (no rescan is scheduled during the test).
    const bin = join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    const realGetent = spawnSync('sh', ['-c', 'command -v getent'], { encoding: 'utf8' }).stdout.trim();
    writeFileSync(
      join(bin, 'getent'),
      `#!/bin/sh\nif [ "$#" = 1 ] && [ "$1" = passwd ]; then sleep 1; fi\nexec '${realGetent}' "$@"\n`,
      { mode: 0o755 },
    );
    guardd = await startGuardd(
      join(dir, 'd'),
      {
        'policy.trusted_keys': [key.publicKeyPem],
        'paths.bootstrap_policy': policyFile,
        // homes from the user directory (no override): the NSS user's home is among them
        'sensors.install.enabled': true,
        'sensors.install.system_roots': false,
        'sensors.install.rescan_cron': '0 0 1 1 *',
      },
      { env: { PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}` } },
    );
    const exe = join(dir, BANNED);
    copyFileSync('/bin/sleep', exe);
    chmodSync(exe, 0o755);
    const run = (uid: number, gid: number): ChildProcess => spawn(exe, ['60'], { uid, gid, stdio: 'ignore' });
    const excepted = run(UID, GID);
    const other = run(localUser.uid, localUser.gid);
    try {
      const blocked = await waitFor(
        () => ruleEvents(guardd, 'process.blocked', 'tgcl-nss-block').find((e) => e.pid === other.pid),
        'the local user blocked',
      );
      expect(blocked).toBeTruthy();
      const audited = await waitFor(
        () => ruleEvents(guardd, 'process.audited', 'tgcl-nss-audit').find((e) => e.pid === excepted.pid),
        'the NSS user excepted (audited by the second rule)',
      );
      expect((audited as { user?: string }).user).toBe(NAME);
      expect(
        ruleEvents(guardd, 'process.blocked', 'tgcl-nss-block').some((e) => e.pid === excepted.pid),
      ).toBe(false);
      expect(excepted.exitCode).toBeNull();
      process.kill(excepted.pid as number, 0); // alive
      const pkg = await waitFor(
        () => ruleEvents(guardd, 'package.audited', 'tgcl-nss-pkg')[0],
        "the package in the NSS user's home",
        { timeoutMs: 30_000 },
      );
      expect(pkg).toMatchObject({ package: { name: PACKAGE, path: PACKAGE_DIR }, user: NAME });
    } finally {
      excepted.kill('SIGKILL');
      other.kill('SIGKILL');
    }
  }, 90_000);
});
