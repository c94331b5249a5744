/**
 * End to end, with real processes: guard-collector and guardd as child processes with a temp
 * config, a harmless binary copied under a banned name, guardctl over the real control socket.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type Collector,
  type Guardd,
  makeKey,
  policyBody,
  runGuardctl,
  type SigningKey,
  startCollectorProcess,
  startGuardd,
  writeSignedPolicy,
} from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tge-');
const SLEEP = spawnSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim();
const BLOCKED = 'tg-e2e-blocked';
const WARNED = 'tg-e2e-warned';

let key: SigningKey;
let collector: Collector;
let guardd: Guardd;
let policyFile: string;

function rules() {
  return [
    {
      id: 'e2e-block',
      name: 'E2E banned tool',
      action: 'block' as const,
      message: 'E2E: not approved.',
      url: 'https://intranet.example/e2e',
      process: { names: [BLOCKED] },
    },
    {
      id: 'e2e-warn',
      name: 'E2E discouraged tool',
      action: 'warn' as const,
      message: 'E2E: discouraged.',
      process: { names: [WARNED] },
    },
  ];
}

/** Launches a copy of `sleep` named `name` from a temp dir. */
function launch(name: string): ChildProcess {
  const binDir = join(dir, 'bin');
  mkdirSync(binDir, { recursive: true });
  const exe = join(binDir, name);
  copyFileSync(SLEEP, exe);
  chmodSync(exe, 0o755);
  return spawn(exe, ['30'], { stdio: 'ignore' });
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
}

async function collectorEvents(type: string): Promise<Record<string, unknown>[]> {
  const res = await fetch(`${collector.url}/v1/events?type=${encodeURIComponent(type)}`, {
    headers: { authorization: `Bearer ${collector.adminToken}` },
  });
  if (!res.ok) throw new Error(`GET /v1/events: ${res.status}`);
  const body = (await res.json()) as { events: Record<string, unknown>[] };
  return body.events;
}

beforeAll(async () => {
  key = makeKey();
  policyFile = writeSignedPolicy(join(dir, 'policy.dsse.json'), policyBody(rules(), { version: 5 }), key);
  collector = await startCollectorProcess(join(dir, 'collector'), policyFile);
  guardd = await startGuardd(join(dir, 'agent'), {
    'collector.url': collector.url,
    'collector.enroll_secret_file': join(dir, 'collector', 'enroll-secret'),
    'policy.trusted_keys': [key.publicKeyPem],
    'paths.bootstrap_policy': policyFile,
  });
});

describe('guardd end to end', () => {
  it('kills a banned process, ships process.blocked to the collector, and counts it in status', async () => {
    const child = launch(BLOCKED);
    const exit = await exitOf(child);
    expect(exit.signal).toBe('SIGKILL');

    const events = await waitFor(async () => {
      const evs = await collectorEvents('process.blocked');
      return evs.find((e) => e.pid === child.pid);
    }, 'process.blocked in the collector');
    expect(events).toMatchObject({
      type: 'process.blocked',
      rule: { id: 'e2e-block', action: 'block' },
      policy_version: 5,
      mode: 'enforce',
    });
    expect((events.outcome as { action_taken: string }).action_taken).toBe('killed');

    const status = runGuardctl(['--socket-dir', guardd.socketDir, 'status', '--json']);
    expect(status.code).toBe(0);
    const s = status.json<{ enforcement: { blocked: number }; policy: { version: number; state: string } }>();
    expect(s.enforcement.blocked).toBe(1);
    expect(s.policy).toMatchObject({ version: 5, state: 'ok' });
  });

  it('lets a warned process run and records process.warned', async () => {
    const child = launch(WARNED);
    try {
      await waitFor(
        async () => (await collectorEvents('process.warned')).find((e) => e.pid === child.pid),
        'process.warned in the collector',
      );
      expect(child.exitCode).toBeNull();
      expect(child.signalCode).toBeNull();
      process.kill(child.pid as number, 0); // still alive: throws ESRCH otherwise
      const s = runGuardctl(['--socket-dir', guardd.socketDir, 'status', '--json']).json<{
        enforcement: { warned: number };
      }>();
      expect(s.enforcement.warned).toBe(1);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('prints a readable status for people', () => {
    const r = runGuardctl(['--socket-dir', guardd.socketDir, 'status']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/guardd\s+running · pid \d+/);
    expect(r.stdout).toMatch(/version\s+v5 · 2 rules · enforce · ok/);
    expect(r.stdout).toMatch(/1 blocked/);
  });

  const attacks: [string, (good: string) => string, string][] = [
    [
      'tampered (one byte of the payload changed)',
      (good) => {
        const env = JSON.parse(good) as { payload: string };
        const bytes = Buffer.from(env.payload, 'base64');
        bytes[bytes.indexOf('"version"')] = 'V'.charCodeAt(0);
        return JSON.stringify({ ...env, payload: bytes.toString('base64') });
      },
      'GUARD_POLICY_SIGNATURE_INVALID',
    ],
    [
      'signed by an unknown key',
      () => {
        const other = makeKey();
        const f = writeSignedPolicy(join(dir, 'other.dsse.json'), policyBody(rules(), { version: 6 }), other);
        return readFileSync(f, 'utf8');
      },
      'GUARD_POLICY_UNTRUSTED_KEY',
    ],
    ['unsigned JSON', () => JSON.stringify(policyBody(rules(), { version: 7 })), 'GUARD_POLICY_UNSIGNED'],
  ];
  it.each(attacks)(
    'refuses a %s policy with its own code and keeps the last good one',
    async (_name, make, code) => {
      const good = readFileSync(policyFile, 'utf8');
      try {
        writeFileSync(policyFile, make(good));
        const r = runGuardctl(['--socket-dir', guardd.socketDir, '--json', 'policy', 'reload']);
        const out = r.json<{ status: string; error?: { code: string } }>();
        expect(out.status).toBe('rejected');
        expect(out.error?.code).toBe(code);
        const s = runGuardctl(['--socket-dir', guardd.socketDir, 'status', '--json']).json<{
          policy: { version: number; state: string };
        }>();
        expect(s.policy).toMatchObject({ version: 5, state: 'ok' });
        await waitFor(
          async () => (await collectorEvents('policy.rejected')).find((e) => e.reason === code),
          `policy.rejected ${code} in the collector`,
        );
      } finally {
        writeFileSync(policyFile, good);
      }
      // Still enforcing the last good policy.
      const exit = await exitOf(launch(BLOCKED));
      expect(exit.signal).toBe('SIGKILL');
    },
  );
});

describe('guardd refuses bad config', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['an unknown key', { 'policy.treshold': 2 }, /unknown config key "policy\.treshold"/],
    [
      'a bad value',
      { 'policy.threshold': 'two' },
      /config key "policy\.threshold".*got "two", expected an integer/,
    ],
  ];
  it.each(cases)('exits 6 with the key, the value and the expectation for %s', (_n, config) => {
    const d = join(dir, `bad-${Object.keys(config)[0]}`);
    mkdirSync(d, { recursive: true });
    const file = join(d, 'config.json');
    writeFileSync(
      file,
      JSON.stringify({ 'paths.state_dir': join(d, 'state'), 'paths.socket_dir': join(d, 'run'), ...config }),
    );
    const r = spawnSync(
      process.execPath,
      [join(import.meta.dirname, '../../bin/guardd.js'), '--config', file],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(cases.find((c) => c[1] === config)![2]);
    expect(r.stderr).toMatch(/\[GUARD_CONFIG_(UNKNOWN_KEY|INVALID_VALUE)\]/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});

describe('guardctl without a daemon', () => {
  it('says so clearly and exits 3', () => {
    const r = runGuardctl(['--socket-dir', join(dir, 'nowhere'), 'status']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/guardd is not running/);
    expect(r.stderr).toMatch(/GUARD_CONTROL_DAEMON_NOT_RUNNING/);
  });
});
