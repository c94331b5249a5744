/**
 * Hostile trees under a watched root: each case is skipped with a counted reason or handled, the
 * sensor keeps running, nothing outside the root is ever moved.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { BANNED, BANNED_UNSCOPED, FAKE_FILES, makeRig, writePackage } from './harness.js';

const base = tempDir('tg-hz-');

describe('hostile trees', () => {
  it('skips malformed, huge, looping, escaping, FIFO and nameless packages with reasons; handles unicode names', async () => {
    const dir = join(base, 'a');
    const root = join(dir, 'prefix', 'lib', 'node_modules');
    mkdirSync(root, { recursive: true });
    writePackage(join(root, 'bad-json'), `{"name": "${BANNED}",`);
    writePackage(join(root, 'huge'), `{"name":"${BANNED}","pad":"${'x'.repeat(2 * 1024 * 1024)}"}`);
    symlinkSync('loop-b', join(root, 'loop-a'));
    symlinkSync('loop-a', join(root, 'loop-b'));
    symlinkSync('/etc', join(root, 'escape'));
    mkdirSync(join(root, 'fifo'));
    execFileSync('mkfifo', [join(root, 'fifo', 'package.json')]);
    mkdirSync(join(root, 'zero'));
    symlinkSync('/dev/zero', join(root, 'zero', 'package.json'));
    writePackage(join(root, 'numname'), '{"name": 42}');
    writeFileSync(join(root, '@not-a-dir'), 'file named like a scope');
    writeFileSync(join(root, 'README'), 'a file at the root');
    const unicode = join(root, 'ünï cødé 名前 x');
    writePackage(unicode, { name: BANNED_UNSCOPED, version: '1.0.0' }, FAKE_FILES);
    const weird = join(root, '@scope', 'weird fields');
    writePackage(weird, { name: BANNED, version: { not: 'a string' }, bin: [1, 2] }, FAKE_FILES);

    const rig = await makeRig({ dir, extraRoots: [root] });
    const events = await waitFor(
      () => rig.sink.ofType('package.quarantined').length === 2 && rig.sink.ofType('package.quarantined'),
      'two quarantines',
    );
    const paths = events.map((e) => (e.package as { path: string }).path).sort();
    expect(paths).toEqual([weird, unicode].sort());
    expect(events.every((e) => (e.outcome as { action_taken: string }).action_taken === 'quarantined')).toBe(
      true,
    );
    expect(events.find((e) => (e.package as { path: string }).path === weird)?.package).toMatchObject({
      version: null,
    });
    const st = rig.sensor.status();
    expect(st.running).toBe(true);
    expect(st.skipped).toMatchObject({
      package_json_not_json: 1,
      package_json_too_large: 1,
      package_json_not_file: 2,
      package_json_no_name: 1,
      package_json_missing: 1, // the link to /etc: read (never moved), no package.json there
      symlink_loop: 2,
    });
    expect(lstatSync(join(root, 'escape')).isSymbolicLink()).toBe(true);
    expect(existsSync('/etc/passwd')).toBe(true);
    await rig.close();
  });

  it('a package arriving with a broken package.json is retried until it parses, then reported once', async () => {
    const dir = join(base, 'b');
    const root = join(dir, 'prefix', 'lib', 'node_modules');
    mkdirSync(root, { recursive: true });
    const rig = await makeRig({ dir, extraRoots: [root], action: 'audit' });
    const pkg = join(root, 'slow-writer');
    writePackage(pkg, `{"name": "${BANNED_UNSCOPED}", "vers`);
    await waitFor(() => rig.sensor.status().details.pending === 1, 'candidate pending');
    writePackage(pkg, { name: BANNED_UNSCOPED, version: '3.0.0' });
    const ev = await waitFor(() => rig.sink.ofType('package.audited')[0], 'package.audited');
    expect(ev.package).toMatchObject({ name: BANNED_UNSCOPED, version: '3.0.0' });
    await waitFor(() => rig.sensor.status().details.pending === 0, 'nothing pending');
    expect(rig.sink.events).toHaveLength(1);
    expect(existsSync(pkg)).toBe(true);
    await rig.close();
  });

  it('permission-denied package and scope dirs are counted, not fatal (real EACCES under an unprivileged euid)', async () => {
    const dir = join(base, 'c');
    const root = join(dir, 'prefix', 'lib', 'node_modules');
    writePackage(join(root, 'locked'), { name: BANNED_UNSCOPED, version: '1.0.0' });
    writePackage(join(root, '@locked-scope', 'pkg'), { name: BANNED, version: '1.0.0' });
    for (let d = root; d.length >= base.length; d = join(d, '..')) chmodSync(d, 0o755);
    chmodSync(join(root, 'locked'), 0o000);
    chmodSync(join(root, '@locked-scope'), 0o000);
    const rig = await makeRig({ dir, extraRoots: [root], start: false });
    const asRoot = process.getuid?.() === 0;
    // Root bypasses file modes, so the scan runs with the effective uid of `nobody` (the real
    // uid stays 0, so it can switch back). Unprivileged runs hit EACCES without switching.
    if (asRoot) process.seteuid?.(65534);
    try {
      await rig.sensor.start();
    } finally {
      if (asRoot) process.seteuid?.(0);
    }
    await waitFor(() => rig.sensor.status().details.pending === 0, 'nothing pending');
    // the scope dir cannot be listed; the package dir can be seen but its package.json not opened
    expect(rig.sensor.status().skipped).toMatchObject({
      permission_denied: 1,
      package_json_permission_denied: 1,
    });
    expect(rig.sink.events).toHaveLength(0);
    chmodSync(join(root, 'locked'), 0o755);
    chmodSync(join(root, '@locked-scope'), 0o755);
    await rig.close();
  });

  it('the cron schedule runs full rescans, and a bad schedule is refused at construction', async () => {
    const dir = join(base, 'd');
    const root = join(dir, 'prefix', 'lib', 'node_modules');
    mkdirSync(root, { recursive: true });
    const rig = await makeRig({ dir, extraRoots: [root], rescanCron: '* * * * * *' });
    await waitFor(() => (rig.sensor.status().details.scans as number) >= 3, 'scheduled rescans', {
      timeoutMs: 10_000,
    });
    await rig.close();
    const scans = rig.sensor.status().details.scans as number;
    expect(rig.sensor.status().running).toBe(false);
    expect(scans).toBeGreaterThanOrEqual(3);
    await expect(makeRig({ dir: join(base, 'e'), rescanCron: 'every hour' })).rejects.toMatchObject({
      code: 'GUARD_CONFIG_INVALID_VALUE',
    });
  });
});
