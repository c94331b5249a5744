/**
 * Review findings against pre-exec deny, reproduced as the unprivileged user would do it: a real
 * guardd (dist/) as root with the execperm addon, a real unprivileged user who controls the files
 * they exec. Each case is one attack that must fail.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callDaemon } from '../../src/control/control-client.js';
import type { PolicyRule } from '../../src/policy/policy-types.js';
import {
  type Guardd,
  makeKey,
  policyBody,
  type SigningKey,
  startGuardd,
  writeSignedPolicy,
} from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';

const TRUE = realpathSync('/bin/true');
const dir = tempDir('tgrv-');
const TAG = randomBytes(4).toString('hex');
/** A copy of `true` with bytes appended: the banned hash, unique to this run. */
const BANNED = join(dir, `banned-${TAG}`);
/** The same size, other bytes appended: a program no rule names. */
const BENIGN = join(dir, `benign-${TAG}`);

let key: SigningKey;
let hash: string;
let user: TestUser;

function rules(): PolicyRule[] {
  return [
    {
      id: `tgrv-block-${TAG}`,
      name: 'tgrv banned tool',
      action: 'block',
      message: 'tgrv: not approved.',
      process: { sha256: [hash] },
    },
  ];
}

async function deniedFor(g: Guardd, exe: string): Promise<Record<string, unknown>[]> {
  const r = await callDaemon<{ events: { event: Record<string, unknown> }[] }>(
    join(g.socketDir, 'guardd.sock'),
    'events.list',
    { type: 'process.denied', limit: 5000 },
  );
  return r.events.map((e) => e.event).filter((e) => e.exe === exe);
}

/** Runs a shell script as the user; returns its stdout lines as key=value pairs. */
function asUser(script: string): Record<string, string> {
  const r = spawnSync('sh', ['-c', script], {
    uid: user.uid,
    gid: user.gid,
    cwd: user.home,
    env: { PATH: '/usr/bin:/bin', HOME: user.home },
    encoding: 'utf8',
    timeout: 20_000,
  });
  const out: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 1);
  }
  out.stderr = r.stderr;
  return out;
}

describe('pre-exec deny under attack (root, Linux, fanotify, a real unprivileged user)', () => {
  let g: Guardd;

  beforeAll(async () => {
    expect(process.getuid?.()).toBe(0);
    user = createTestUser('tgrv');
    key = makeKey();
    const tail = (): Buffer => randomBytes(64);
    writeFileSync(BANNED, Buffer.concat([readFileSync(TRUE), tail()]));
    writeFileSync(BENIGN, Buffer.concat([readFileSync(TRUE), tail()]));
    chmodSync(dir, 0o755);
    chmodSync(BANNED, 0o644);
    chmodSync(BENIGN, 0o644);
    hash = createHash('sha256').update(readFileSync(BANNED)).digest('hex');
    const policy = writeSignedPolicy(
      join(dir, 'policy.dsse.json'),
      policyBody(rules(), { version: 3, mode: 'enforce' }),
      key,
    );
    g = await startGuardd(join(dir, 'guardd'), {
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policy,
      'enforcement.exec_deny': 'auto',
    });
    const s = await callDaemon<{ exec_deny: { state: string; reason?: string } }>(
      join(g.socketDir, 'guardd.sock'),
      'status',
    );
    expect(s.exec_deny, `exec_deny off: ${s.exec_deny.reason}`).toMatchObject({ state: 'on' });
  });

  afterAll(async () => {
    await g?.stop('SIGTERM');
  });

  it('finding: a benign file rewritten in place with banned bytes (same size, mtime restored) is still denied', async () => {
    const exe = join(user.home, `tool-${TAG}`);
    // The user runs a benign program of the banned size, then writes the banned bytes into the
    // same inode and puts its mtime back (touch -d: the owner may set it; ctime moves on).
    const r = asUser(
      [
        `cp "${BENIGN}" "${exe}" && chmod 755 "${exe}"`,
        `"${exe}"; echo first=$?`,
        `m=$(stat -c %.9Y "${exe}")`,
        `cat "${BANNED}" > "${exe}"`,
        `touch -m -d "@$m" "${exe}"`,
        `"${exe}" 2>/dev/null; echo second=$?`,
      ].join('\n'),
    );
    expect(r.first, r.stderr).toBe('0');
    expect(createHash('sha256').update(readFileSync(exe)).digest('hex')).toBe(hash);
    expect(r.second, 'the banned bytes ran: the hash came from the cache of the benign version').toBe('126');
    await waitFor(async () => {
      const evs = await deniedFor(g, exe);
      return evs.length > 0 ? evs : undefined;
    }, `process.denied for ${exe}`);
  });
});
