/**
 * What `npm start` runs — `guardd --local` — as a real process: it prepares its directory, signs
 * the example ban list, embeds a collector, blocks a process named like Claude Code, prints one
 * line per event, answers guardctl, and stops cleanly on Ctrl-C (SIGINT).
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runGuardctl } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tgl-');
const localDir = join(dir, 'state');
// The example ban list with its process names made unique, so this daemon cannot kill processes
// that other test files run at the same time under real tool names.
const BANNED = 'tg-local-claude';
const policyBody = join(dir, 'policy.json');
let out = '';
let guardd: ReturnType<typeof spawn>;
let exited: Promise<number | null>;

beforeAll(async () => {
  const example = JSON.parse(readFileSync(join(ROOT, 'policy/example-policy.json'), 'utf8'));
  example.rules = example.rules.map((r: { id: string }) => ({
    ...r,
    process: { names: [r.id === 'claude-code' ? BANNED : `tg-local-${r.id}`] },
    packages: [],
    paths: [],
  }));
  writeFileSync(policyBody, JSON.stringify(example));
  guardd = spawn(
    process.execPath,
    [join(ROOT, 'bin/guardd.js'), '--local', '--local-dir', localDir, '--local-policy', policyBody],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
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
    expect(out).toMatch(/can (only stop your own processes|stop ANY matching process)/);
    expect(out).toMatch(/embedded collector at http:\/\/127\.0\.0\.1:\d+/);
    expect(out).toMatch(/policy v\d+ \(\d+ rules, mode enforce\) signed by a local development key/);
    expect(statSync(join(localDir, 'dev-signing-key.pem')).mode & 0o777).toBe(0o600);
  });

  it('blocks a copy of sleep named like the banned tool and prints one line for the event', async () => {
    const exe = join(dir, BANNED);
    copyFileSync(spawnSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim(), exe);
    chmodSync(exe, 0o755);
    const child = spawn(exe, ['60'], { stdio: 'ignore' });
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
