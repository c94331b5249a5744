/**
 * Issue 12, class 1, against the real daemon (dist/, as root): one unprivileged user points the
 * base of a policy `paths` glob (~/.local/share/claude/versions) at guardd's own state dir,
 * another at a third user's ~/.ssh. guardd moves neither, keeps enforcing (an honest banned
 * package of the third user is quarantined meanwhile), and after a restart has the same device id
 * (the state DB was never touched). Users are real, created here with the `tgq` prefix.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeKey, policyBody, runGuardctl, startGuardd, writeSignedPolicy } from '../../helpers/daemon.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser, type TestUser } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { BANNED, FAKE_FILES, FAKE_MANIFEST, link, writePackage } from './harness.js';

const dir = tempDir('tgqd-');
chmodSync(dir, 0o755); // the users can even see the state dir's path: refusal must not rely on modes
const chownR = (path: string, u: TestUser): void => {
  execFileSync('chown', ['-hR', `${u.uid}:${u.gid}`, path]);
};

describe('glob base symlinked into guardd state / another user home (real guardd)', () => {
  it('nothing is moved, guardd keeps enforcing, the device id survives a restart', async () => {
    const a = createTestUser('tgq');
    const b = createTestUser('tgq');
    const victim = createTestUser('tgq');
    const agent = join(dir, 'agent');
    const state = join(agent, 'state');
    mkdirSync(state, { recursive: true, mode: 0o755 });
    // Victim: a private key, and an honest banned package in their npm prefix.
    const ssh = join(victim.home, '.ssh');
    mkdirSync(ssh, { recursive: true, mode: 0o700 });
    writeFileSync(join(ssh, 'id_ed25519'), 'PRIVATE KEY\n', { mode: 0o600 });
    const prefix = join(victim.home, '.npm-global');
    const pkg = join(prefix, 'lib', 'node_modules', '@anthropic-ai', 'claude-code');
    writePackage(pkg, FAKE_MANIFEST, FAKE_FILES);
    link('../lib/node_modules/@anthropic-ai/claude-code/cli.js', join(prefix, 'bin', 'claude'));
    chownR(ssh, victim);
    chownR(prefix, victim);
    // The attackers' glob bases.
    for (const [u, target] of [
      [a, state],
      [b, ssh],
    ] as const) {
      const share = join(u.home, '.local', 'share', 'claude');
      mkdirSync(share, { recursive: true });
      chownR(join(u.home, '.local'), u);
      symlinkSync(target, join(share, 'versions'));
      execFileSync('chown', ['-h', `${u.uid}:${u.gid}`, join(share, 'versions')]);
    }

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
            paths: ['~/.local/share/claude/versions/*'],
          },
        ],
        { version: 7 },
      ),
      key,
    );
    const config = {
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policyFile,
      'sensors.process.enabled': false,
      'sensors.install.enabled': true,
      'sensors.install.homes': [a.home, b.home, victim.home],
    };
    const guardd = await startGuardd(agent, config);
    const sock = ['--socket-dir', guardd.socketDir];
    const status = runGuardctl([...sock, 'status', '--json']).json<{ device_id: string }>();
    const stateBefore = readdirSync(state).sort();
    const sshBefore = readFileSync(join(ssh, 'id_ed25519'), 'utf8');

    // Enforcement goes on: the honest package is quarantined.
    const entries = await waitFor(() => {
      const r = runGuardctl([...sock, '--json', 'quarantine', 'list', '--all']);
      const e = r.code === 0 ? r.json<{ entries: { path: string; state: string }[] }>().entries : [];
      return e.some((x) => x.path === pkg && x.state === 'quarantined') && e;
    }, 'the honest package quarantined');
    // Nothing of the state dir or the victim's key was ever an entry.
    expect(entries.map((e) => e.path)).toEqual([pkg]);
    expect(readFileSync(join(ssh, 'id_ed25519'), 'utf8')).toBe(sshBefore);
    expect(statSync(join(ssh, 'id_ed25519')).uid).toBe(victim.uid);
    for (const name of stateBefore) expect(readdirSync(state)).toContain(name);
    expect(statSync(join(state, 'guardd.db')).isFile()).toBe(true);

    // Both attempts were seen, refused and reported as events with the stable code.
    const refusals = await waitFor(() => {
      const text = runGuardctl([
        ...sock,
        '--json',
        'events',
        '--type',
        'path.quarantined',
        '--limit',
        '50',
      ]).stdout;
      const ssh = text.includes(
        `refusing to act in ${join(b.home, '.local', 'share', 'claude', 'versions')}`,
      );
      const db = text.includes(join(a.home, '.local', 'share', 'claude', 'versions', 'guardd.db'));
      return ssh && db && text;
    }, 'both refusals reported');
    const failed = [...refusals.matchAll(/"error": "([A-Z_]+):/g)].map((m) => m[1]);
    expect(failed.length).toBeGreaterThanOrEqual(2);
    expect(new Set(failed)).toEqual(new Set(['GUARD_QUARANTINE_UNSAFE_PATH']));
    // A restart finds the same state: same device id, the entry still listed.
    await guardd.stop();
    const again = await startGuardd(agent, config);
    const sock2 = ['--socket-dir', again.socketDir];
    expect(runGuardctl([...sock2, 'status', '--json']).json<{ device_id: string }>().device_id).toBe(
      status.device_id,
    );
    const listed = runGuardctl([...sock2, '--json', 'quarantine', 'list']).json<{
      entries: { path: string }[];
    }>();
    expect(listed.entries.map((e) => e.path)).toEqual([pkg]);
    expect(readFileSync(join(ssh, 'id_ed25519'), 'utf8')).toBe(sshBefore);
    await again.stop();
  });
});
