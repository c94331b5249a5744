/**
 * The install sensor inside the real daemon (dist/, as a child process): a banned package present
 * in a configured home is quarantined at start, `guardctl quarantine list` shows it, restore needs
 * `--force` while the policy still bans it, verifies the tree hash, and the still-banned package is
 * quarantined again. (Byte-for-byte round trips are in sensor-layouts / quarantine-store tests.)
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type Guardd,
  makeKey,
  policyBody,
  runGuardctl,
  startGuardd,
  writeSignedPolicy,
} from '../../helpers/daemon.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { BANNED, FAKE_FILES, FAKE_MANIFEST, link, writePackage } from './harness.js';

const dir = tempDir('tgid-');
const home = join(dir, 'home', 'erin');
const prefix = join(home, '.npm-global');
const pkg = join(prefix, 'lib', 'node_modules', '@anthropic-ai', 'claude-code');
const bin = join(prefix, 'bin', 'claude');
let guardd: Guardd;

beforeAll(async () => {
  writePackage(pkg, FAKE_MANIFEST, FAKE_FILES);
  link('../lib/node_modules/@anthropic-ai/claude-code/cli.js', bin);
  const key = makeKey();
  const policyFile = writeSignedPolicy(
    join(dir, 'policy.dsse.json'),
    policyBody(
      [
        {
          id: 'claude-code',
          name: 'Claude Code',
          action: 'block',
          message: 'Claude Code is not approved.',
          packages: [{ ecosystem: 'npm', name: BANNED, range: '*' }],
        },
      ],
      { version: 7 },
    ),
    key,
  );
  mkdirSync(join(dir, 'agent'), { recursive: true });
  guardd = await startGuardd(join(dir, 'agent'), {
    'policy.trusted_keys': [key.publicKeyPem],
    'paths.bootstrap_policy': policyFile,
    'sensors.process.enabled': false,
    'sensors.install.enabled': true,
    'sensors.install.homes': [home],
  });
});

describe('install sensor in guardd', () => {
  it('quarantines at start; guardctl lists it; restore needs --force while banned; still banned → quarantined again', async () => {
    const sock = ['--socket-dir', guardd.socketDir];
    const entries = await waitFor(() => {
      const r = runGuardctl([...sock, '--json', 'quarantine', 'list']);
      const e =
        r.code === 0 ? r.json<{ entries: { id: string; path: string; links: string[] }[] }>().entries : [];
      return e.length > 0 && e;
    }, 'a quarantine entry');
    expect(entries).toEqual([expect.objectContaining({ path: pkg, links: [bin] })]);
    expect(existsSync(pkg)).toBe(false);
    const id = entries[0]?.id as string;
    const text = runGuardctl([...sock, 'quarantine', 'list']);
    expect(text.stdout).toContain(`${id}  QUARANTINED  ${BANNED}@1.0.99 (npm)`);

    const refused = runGuardctl([...sock, 'quarantine', 'restore', id]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('GUARD_QUARANTINE_STILL_BANNED');
    const unknown = runGuardctl([...sock, 'quarantine', 'restore', '0190f0f0-0000-7000-8000-000000000000']);
    expect(unknown.code).toBe(7);
    expect(unknown.stderr).toContain('GUARD_QUARANTINE_NOT_FOUND');

    const forced = runGuardctl([...sock, '--json', 'quarantine', 'restore', id, '--force']);
    expect(forced.code).toBe(0);
    expect(forced.json()).toMatchObject({
      id,
      path: pkg,
      hash_verified: true,
      forced: true,
      links_restored: 1,
    });
    // Still banned: the sensor sees the restored directory and quarantines it again (new entry).
    const again = await waitFor(() => {
      const r = runGuardctl([...sock, '--json', 'quarantine', 'list', '--all']);
      const e = r.json<{ entries: { id: string; state: string; path: string }[] }>().entries;
      // listed from the moment the move starts ("moving", then "copied"); the assertion below
      // checks where it ends
      return e.length === 2 && e.every((x) => x.state !== 'moving' && x.state !== 'copied') && e;
    }, 'a second quarantine entry, moved');
    expect(again.map((e) => [e.id === id, e.state])).toEqual([
      [true, 'restored'],
      [false, 'quarantined'],
    ]);
    expect(existsSync(pkg)).toBe(false);
  });
});
