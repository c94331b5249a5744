/**
 * What `npm start` runs — `guardd --local` — as a real process: it prepares its directory, signs
 * the example ban list, embeds a collector, blocks a process named like Claude Code, prints one
 * line per event, answers guardctl, and stops cleanly on Ctrl-C (SIGINT).
 *
 * It runs the way a developer does: unprivileged. When the suite runs as root (CI), guardd and the
 * demo process run as a user created for this file (as root, local mode only reports; that and
 * the rest of its scope are test/e2e/local-mode-scope.test.ts).
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runGuardctl } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { checkoutReadableBy, createTestUser, spawnAs, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tgl-');
chmodSync(dir, 0o755);
const spare = tempDir('tgl-co-');
/** Root runs the demo as a fresh unprivileged user; anyone else runs it as themselves. */
const asUser: TestUser | null = process.getuid?.() === 0 ? createTestUser('tglm') : null;
const userDir = join(dir, 'user');
mkdirSync(userDir, { mode: 0o700 });
if (asUser) chownSync(userDir, asUser.uid, asUser.gid);
const localDir = join(userDir, 'state');
// The example ban list with its process names made unique, so this daemon cannot kill processes
// that other test files run at the same time under real tool names.
const BANNED = 'tg-local-claude';
const policyBody = join(dir, 'policy.json');
let out = '';
let guardd: ChildProcess;
let exited: Promise<number | null>;

beforeAll(async () => {
  const example = JSON.parse(readFileSync(join(ROOT, 'policy/example-policy.json'), 'utf8'));
  example.rules = example.rules.map((r: { id: string }) => ({
    ...r,
    process: { names: [r.id === 'claude-code' ? BANNED : `tg-local-${r.id}`] },
    packages: [],
    paths: [],
  }));
  writeFileSync(policyBody, JSON.stringify(example), { mode: 0o644 });
  const checkout = asUser ? checkoutReadableBy(asUser, spare) : ROOT;
  guardd = spawnAs(
    asUser,
    process.execPath,
    [join(checkout, 'bin/guardd.js'), '--local', '--local-dir', localDir, '--local-policy', policyBody],
    { stdio: ['ignore', 'pipe', 'pipe'], cwd: userDir },
  );
  guardd.stdout?.on('data', (d) => {
    out += d;
  });
  guardd.stderr?.on('data', (d) => {
    out += d;
  });
  exited = new Promise((res) => guardd.once('exit', (code) => res(code)));
  await waitFor(
    () => out.includes('Ctrl-C stops everything'),
    `the local-mode banner (output so far: ${out})`,
    { timeoutMs: 30_000 },
  );
});

afterAll(() => {
  if (guardd.exitCode === null) guardd.kill('SIGKILL');
});

describe('guardd --local (npm start)', () => {
  it('says what it can kill, where its state and collector are, and which policy it enforces', () => {
    expect(out).toMatch(/toolguard local mode/);
    expect(out).toMatch(/it stops only processes you start from now on/);
    expect(out).toMatch(/packages: only under its demo prefix .*npm-global/);
    expect(out).toMatch(/embedded collector at http:\/\/127\.0\.0\.1:\d+/);
    expect(out).toMatch(
      /fleet console: http:\/\/127\.0\.0\.1:\d+\/console\/ \(log in with the token in .*collector-admin-token\)/,
    );
    expect(out).toMatch(/policy v\d+ \(\d+ rules, mode enforce\) signed by a local development key/);
    expect(statSync(join(localDir, 'dev-signing-key.pem')).mode & 0o777).toBe(0o600);
  });

  it('blocks a copy of sleep named like the banned tool and prints one line for the event', async () => {
    const exe = join(dir, BANNED);
    copyFileSync(spawnSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim(), exe);
    chmodSync(exe, 0o755);
    const child = spawnAs(asUser, exe, ['60']);
    const signal = await new Promise((res) => child.once('exit', (_c, s) => res(s)));
    expect(signal).toBe('SIGKILL');
    await waitFor(
      () => new RegExp(`process\\.blocked pid=${child.pid} .*→ killed`).test(out),
      'the process.blocked line',
    );
  });

  it('answers guardctl found through ./.toolguard-style config', () => {
    const r = runGuardctl(['--config', join(localDir, 'config.json'), 'status', '--json']);
    expect(r.code).toBe(0);
    const s = r.json<{ local_mode: boolean; policy: { state: string }; enforcement: { blocked: number } }>();
    expect(s.local_mode).toBe(true);
    expect(s.policy.state).toBe('ok');
    expect(s.enforcement.blocked).toBeGreaterThanOrEqual(1);
  });

  it('stops cleanly on SIGINT, removing its sockets', async () => {
    guardd.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(existsSync(join(localDir, 'run', 'guardd.sock'))).toBe(false);
  });
});
