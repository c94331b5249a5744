/**
 * Review findings against pre-exec deny, reproduced as the unprivileged user would do it: a real
 * guardd (dist/) as root with the execperm addon, a real unprivileged user who controls the files
 * they exec. Each case is one attack that must fail.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
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
/** Content markers unique to this run, and a copy of `sleep` carrying them. */
const MARKERS = [`tgrv-marker-one-${TAG}`, `tgrv-marker-two-${TAG}`];
const MARKED = join(dir, `marked-${TAG}`);
/** The dynamic loader of this machine. */
const LOADER = ['/lib64/ld-linux-x86-64.so.2', '/lib/ld-linux-aarch64.so.1'].find((p) => existsSync(p));

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
      process: { sha256: [hash], markers: [MARKERS] },
    },
  ];
}

async function deniedFor(
  g: Guardd,
  exe: string,
  type = 'process.denied',
): Promise<Record<string, unknown>[]> {
  const r = await callDaemon<{ events: { event: Record<string, unknown> }[] }>(
    join(g.socketDir, 'guardd.sock'),
    'events.list',
    { type, limit: 5000 },
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
    writeFileSync(
      MARKED,
      Buffer.concat([readFileSync(realpathSync('/bin/sleep')), Buffer.from(`\n${MARKERS.join('\n')}\n`)]),
    );
    chmodSync(MARKED, 0o644);
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

  it('finding: a marker-carrying program run through the dynamic loader (ld.so ./tool) is killed after it starts', async () => {
    expect(LOADER, 'no x86-64/aarch64 dynamic loader here').toBeDefined();
    const exe = join(user.home, `ld-tool-${TAG}`);
    // The loader is what is exec'd (pre-exec deny cannot see the tool); the post-exec path must
    // look at the program it maps, not at the loader.
    const r = asUser(
      [
        `cp "${MARKED}" "${exe}" && chmod 755 "${exe}"`,
        `"${LOADER}" "./${basename(exe)}" 30 & p=$!`,
        'i=0; while kill -0 $p 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done',
        'if kill -0 $p 2>/dev/null; then echo alive=yes; kill $p; else echo alive=no; fi',
      ].join('\n'),
    );
    expect(r.alive, r.stderr).toBe('no');
    const evs = await waitFor(async () => {
      const e = await deniedFor(g, exe, 'process.blocked');
      return e.length > 0 ? e : undefined;
    }, `process.blocked for ${exe}`);
    expect(evs[0]).toMatchObject({ name: basename(exe), rule: { id: `tgrv-block-${TAG}` } });
  });
});
