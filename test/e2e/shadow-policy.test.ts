/**
 * Shadow policies end to end, with real processes: guard-collector and guardd as child processes,
 * guardctl publishing through the admin API, a harmless binary copied under a name only the shadow
 * bans. Publish shadow → guardd reports would-match (the process is NOT killed) → the admin API
 * shows it per rule and device → promote → the process is killed and process.blocked arrives.
 * Hostile: a shadow signed by a key the device does not trust is refused (policy.rejected,
 * channel shadow, GUARD_POLICY_UNTRUSTED_KEY) and changes nothing.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PolicyRule } from '../../src/policy/policy-types.js';
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

const dir = tempDir('tg-shadow-');
const SLEEP = spawnSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim();
/** Allowed by the enforced policy, banned by the shadow (names ≤ 15 characters: the kernel's comm). */
const CANDIDATE = 'tg-sh-cand';
const ROGUE = 'tg-sh-rogue';
const ENFORCED_BAN = 'tg-sh-enf';

let key: SigningKey;
let stranger: SigningKey;
let collector: Collector;
let guardd: Guardd;
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

const enforcedRule: PolicyRule = {
  id: 'enforced-ban',
  name: 'Enforced ban',
  action: 'block',
  message: 'not approved',
  process: { names: [ENFORCED_BAN] },
};
const shadowRule: PolicyRule = {
  id: 'candidate-ban',
  name: 'Candidate ban',
  action: 'block',
  message: 'candidate: not approved',
  process: { names: [CANDIDATE] },
};

/** Launches a copy of `sleep` named `name` (it runs until killed). */
function launch(name: string): ChildProcess {
  const binDir = join(dir, 'bin');
  mkdirSync(binDir, { recursive: true });
  const exe = join(binDir, name);
  copyFileSync(SLEEP, exe);
  chmodSync(exe, 0o755);
  const child = spawn(exe, ['300'], { stdio: 'ignore' });
  children.push(child);
  return child;
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * One GET on a connection of its own: guardctl runs synchronously here (blocking this event loop),
 * and a pooled keep-alive socket could meanwhile have been closed by the collector's idle timer.
 */
function get(path: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      `${collector.url}${path}`,
      { agent: false, headers: { authorization: `Bearer ${collector.adminToken}` } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
  });
}

async function admin(path: string): Promise<Record<string, unknown>> {
  const r = await get(path);
  if (r.status !== 200) throw new Error(`GET ${path}: ${r.status}`);
  return JSON.parse(r.text) as Record<string, unknown>;
}

async function collectorEvents(type: string): Promise<Record<string, unknown>[]> {
  return (await admin(`/v1/events?type=${encodeURIComponent(type)}&limit=1000`)).events as Record<
    string,
    unknown
  >[];
}

/** `guardctl policy <verb> …` against the collector, as the admin would type it. */
function adminCli(args: readonly string[]): ReturnType<typeof runGuardctl> {
  return runGuardctl([
    ...args,
    '--collector',
    collector.url,
    '--admin-token-file',
    join(dir, 'collector', 'admin-token'),
    '--json',
  ]);
}

function bodyFile(name: string, version: number, rules: PolicyRule[]): string {
  const file = join(dir, name);
  writeFileSync(file, `${JSON.stringify(policyBody(rules, { version }), null, 2)}\n`);
  return file;
}

function keyFile(name: string, k: SigningKey): string {
  const file = join(dir, name);
  writeFileSync(file, k.privateKeyPem, { mode: 0o600 });
  return file;
}

const reload = () => runGuardctl(['--socket-dir', guardd.socketDir, '--json', 'policy', 'reload']);
const status = () =>
  runGuardctl(['--socket-dir', guardd.socketDir, 'status', '--json']).json<{
    policy: { version: number };
    shadow?: { version: number | null; reported: number } | null;
  }>();

beforeAll(async () => {
  key = makeKey();
  stranger = makeKey();
  const policyFile = writeSignedPolicy(
    join(dir, 'policy.dsse.json'),
    policyBody([enforcedRule], { version: 5 }),
    key,
  );
  collector = await startCollectorProcess(join(dir, 'collector'), policyFile);
  guardd = await startGuardd(join(dir, 'agent'), {
    'collector.url': collector.url,
    'collector.enroll_secret_file': join(dir, 'collector', 'enroll-secret'),
    'policy.trusted_keys': [key.publicKeyPem],
    'paths.bootstrap_policy': policyFile,
    'sensors.process.interval_ms': 200,
  });
});

describe('shadow policy end to end', () => {
  it('publish shadow → would-match reported, process left alone → admin API per rule and device → promote → blocked', async () => {
    const child = launch(CANDIDATE);
    const signer = keyFile('signer.key', key);

    const published = adminCli([
      'policy',
      'publish',
      bodyFile('candidate.json', 6, [enforcedRule, shadowRule]),
      '--shadow',
      '--key',
      signer,
      '--by',
      'alice@example',
      '--message',
      'try the candidate ban',
    ]);
    expect(published.code, published.stderr).toBe(0);
    expect(published.json()).toMatchObject({ channel: 'shadow', action: 'publish', version: 6 });

    // guardd takes the shadow at its next fetch (now, on reload) and reports the running process
    const r = reload().json<{ version: number; shadow: { status: string; version: number } }>();
    expect(r).toMatchObject({ version: 5, shadow: { status: 'applied', version: 6 } });
    const match = await waitFor(
      async () => (await collectorEvents('policy.shadow_match')).find((e) => e.pid === child.pid),
      'policy.shadow_match of the candidate process in the collector',
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(match).toMatchObject({
      subject_kind: 'process',
      name: CANDIDATE,
      shadow_version: 6,
      rule: { id: 'candidate-ban', action: 'block' },
      reason: 'name',
      mode: 'enforce',
      would: 'block',
      enforced: { act: 'none', rule_id: null, policy_version: 5 },
    });
    // evaluated, never acted on
    expect(alive(child)).toBe(true);
    expect(await collectorEvents('process.blocked')).toEqual([]);
    expect(status().shadow).toMatchObject({ version: 6 });
    const text = runGuardctl(['--socket-dir', guardd.socketDir, 'status']);
    expect(text.stdout).toMatch(
      /shadow\s+v6 · 2 rules · evaluated, never acted on · \d+ would-match reported/,
    );

    // the admin API: counts per rule and per device
    const deviceId = match.device_id as string;
    const summary = await admin('/v1/admin/policy/shadow');
    expect(summary).toMatchObject({ version: 6, present: true, shadow_version: 6, enforced_version: 5 });
    expect(summary.rules).toEqual([
      expect.objectContaining({ rule_id: 'candidate-ban', matches: expect.any(Number), devices: 1 }),
    ]);
    const perDevice = await admin('/v1/admin/policy/shadow/devices');
    expect(perDevice.devices).toEqual([
      expect.objectContaining({ device_id: deviceId, rule_id: 'candidate-ban' }),
    ]);

    // promote what was reviewed; a different version is refused first
    const wrong = adminCli(['policy', 'promote', '--shadow-version', '7']);
    expect(wrong.code).toBe(5);
    expect(JSON.parse(wrong.stdout || wrong.stderr).error.code).toBe('GUARD_COLLECTOR_SHADOW_CHANGED');
    const promoted = adminCli(['policy', 'promote', '--shadow-version', '6', '--by', 'bob@example']);
    expect(promoted.code, promoted.stderr).toBe(0);
    expect(promoted.json()).toMatchObject({ channel: 'enforced', action: 'promote', version: 6 });
    expect((await get('/v1/policy/shadow')).status).toBe(204);

    // guardd enforces v6 at its next fetch: the running candidate is killed and reported
    const after = reload().json<{ version: number; shadow: { status: string } }>();
    expect(after).toMatchObject({ version: 6, shadow: { status: 'none' } });
    const blocked = await waitFor(
      async () => (await collectorEvents('process.blocked')).find((e) => e.pid === child.pid),
      'process.blocked of the candidate process in the collector',
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(blocked).toMatchObject({ rule: { id: 'candidate-ban' }, policy_version: 6 });
    await waitFor(() => !alive(child), 'the candidate process to be killed');
    expect(child.signalCode).toBe('SIGKILL');
    expect(status().shadow ?? null).toBeNull();

    const history = (await admin('/v1/admin/policy/history')).publications as Record<string, unknown>[];
    expect(history.map((h) => [h.channel, h.action, h.version, h.published_by])).toEqual([
      ['shadow', 'clear', 6, 'bob@example'],
      ['enforced', 'promote', 6, 'bob@example'],
      ['shadow', 'publish', 6, 'alice@example'],
    ]);
  });

  it('refuses a shadow signed by an untrusted key (policy.rejected, channel shadow, GUARD_POLICY_UNTRUSTED_KEY); nothing changes', async () => {
    const child = launch(ROGUE);
    const rogue = adminCli([
      'policy',
      'publish',
      bodyFile('rogue.json', 7, [{ ...shadowRule, id: 'rogue-ban', process: { names: [ROGUE] } }]),
      '--shadow',
      '--key',
      keyFile('stranger.key', stranger),
    ]);
    // this collector has no policy_trusted_keys: it records the upload unverified; devices decide
    expect(rogue.code, rogue.stderr).toBe(0);
    expect(rogue.json()).toMatchObject({ channel: 'shadow', verified: false });
    const r = reload().json<{ version: number; shadow: { status: string; error: { code: string } } }>();
    expect(r).toMatchObject({
      version: 6,
      shadow: { status: 'rejected', error: { code: 'GUARD_POLICY_UNTRUSTED_KEY' } },
    });
    const rejected = await waitFor(
      async () =>
        (await collectorEvents('policy.rejected')).find(
          (e) => e.channel === 'shadow' && e.policy_version === 7,
        ),
      'policy.rejected of the shadow in the collector',
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(rejected.reason).toBe('GUARD_POLICY_UNTRUSTED_KEY');
    expect(status()).toMatchObject({ policy: { version: 6 } });
    expect(status().shadow ?? null).toBeNull();
    expect((await collectorEvents('policy.shadow_match')).some((e) => e.pid === child.pid)).toBe(false);
    expect(alive(child)).toBe(true);
  });
});
