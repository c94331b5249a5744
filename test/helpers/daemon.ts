/**
 * Real toolguard programs as child processes for end-to-end tests: a signed test policy, a
 * guard-collector on an ephemeral loopback port, guardd with a temp config, and guardctl.
 * Everything runs from dist/ (built by `npm test` before vitest starts).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll } from 'vitest';
import { callDaemon } from '../../src/control/control-client.js';
import type { ExecPermCounters } from '../../src/enforcement/exec-deny.js';
import { signEnvelope } from '../../src/policy/dsse.js';
import { generateKeyPair, parsePrivateKey } from '../../src/policy/keys.js';
import { POLICY_PAYLOAD_TYPE, type PolicyBody, type PolicyRule } from '../../src/policy/policy-types.js';
import { WaitAborted, waitFor } from './wait.js';

export const ROOT = resolve(import.meta.dirname, '../..');
const BIN = (name: string): string => join(ROOT, 'bin', `${name}.js`);

export interface SigningKey {
  readonly privateKeyPem: string;
  readonly publicKeyPem: string;
}

export function makeKey(): SigningKey {
  const k = generateKeyPair();
  return { privateKeyPem: k.privateKeyPem, publicKeyPem: k.publicKeyPem };
}

/** A policy body valid for two weeks from now. */
export function policyBody(rules: PolicyRule[], extra: Partial<PolicyBody> = {}): PolicyBody {
  const now = Date.now();
  return {
    schema: 'toolguard.policy/v1',
    version: 1,
    issued_at: new Date(now - 60_000).toISOString(),
    expires_at: new Date(now + 14 * 86_400_000).toISOString(),
    mode: 'enforce',
    rules,
    ...extra,
  };
}

/** Signs `body` with `key` and writes the envelope to `file`. */
export function writeSignedPolicy(file: string, body: PolicyBody, key: SigningKey): string {
  const env = signEnvelope(JSON.stringify(body), POLICY_PAYLOAD_TYPE, [parsePrivateKey(key.privateKeyPem)]);
  writeFileSync(file, JSON.stringify(env));
  return file;
}

export interface RunningProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Every child started through this module; killed when the test file ends (registered at import, not inside a hook). */
const children = new Set<RunningProcess>();
afterAll(async () => {
  await Promise.all([...children].map((p) => p.stop('SIGKILL')));
});

/** How long stop() waits for a program to exit after SIGTERM/SIGINT (guardd's own stop is bounded well below). */
const STOP_WAIT_MS = 60_000;

/** Each thread of `pid` with its name, state and kernel wait channel (where a hung process waits). */
function threadsOf(pid: number): string {
  const read = (f: string): string => {
    try {
      return readFileSync(f, 'utf8').trim();
    } catch {
      return '?';
    }
  };
  try {
    return readdirSync(`/proc/${pid}/task`)
      .map((tid) => {
        const stat = read(`/proc/${pid}/task/${tid}/stat`);
        const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
        return `thread ${tid} ${read(`/proc/${pid}/task/${tid}/comm`)} state ${state} wchan ${read(`/proc/${pid}/task/${tid}/wchan`)}`;
      })
      .join('\n');
  } catch {
    return `no /proc/${pid}`;
  }
}

function track(child: ChildProcess): RunningProcess {
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const proc: RunningProcess = {
    child,
    output: () => out,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      if (signal === 'SIGKILL') return exited;
      // A program that does not exit after a stop signal fails the test with where it hangs,
      // instead of the test timing out with no clue.
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<'hung'>((res) => {
        timer = setTimeout(() => res('hung'), STOP_WAIT_MS);
      });
      const outcome = await Promise.race([exited, hung]);
      clearTimeout(timer);
      if (outcome !== 'hung') return outcome;
      const where = child.pid ? threadsOf(child.pid) : '';
      child.kill('SIGKILL');
      await exited;
      throw new Error(
        `${child.spawnargs.slice(1, 2).join(' ')} did not exit within ${STOP_WAIT_MS} ms of ${signal}\n${where}\n--- output (end) ---\n${out.slice(-6000)}`,
      );
    },
  };
  children.add(proc);
  return proc;
}

export interface Collector extends RunningProcess {
  readonly url: string;
  readonly dbFile: string;
  readonly policyFile: string;
  readonly enrollSecret: string;
  readonly adminToken: string;
}

/** Starts guard-collector on 127.0.0.1:0 as a real process and waits for its URL. */
export async function startCollectorProcess(dir: string, policyFile: string): Promise<Collector> {
  mkdirSync(dir, { recursive: true });
  const enrollSecret = randomBytes(16).toString('hex');
  const adminToken = randomBytes(16).toString('hex');
  writeFileSync(join(dir, 'enroll-secret'), enrollSecret, { mode: 0o600 });
  writeFileSync(join(dir, 'admin-token'), adminToken, { mode: 0o600 });
  const dbFile = join(dir, 'collector.db');
  const child = spawn(
    process.execPath,
    [
      BIN('guard-collector'),
      '--listen',
      '127.0.0.1:0',
      '--db',
      dbFile,
      '--policy-file',
      policyFile,
      '--enroll-secret-file',
      join(dir, 'enroll-secret'),
      '--admin-token-file',
      join(dir, 'admin-token'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const proc = track(child);
  const url = await waitFor(
    () => /listening on (https?:\/\/[^\s]+)/.exec(proc.output())?.[1],
    `collector URL (output: ${proc.output()})`,
  );
  return { ...proc, url, dbFile, policyFile, enrollSecret, adminToken };
}

export interface Guardd extends RunningProcess {
  readonly socketDir: string;
  readonly stateDir: string;
  readonly configFile: string;
}

/** The node flags of the unit's ExecStart (its V8 heap cap), read from the unit file itself. */
export function unitNodeArgs(): string[] {
  const unit = readFileSync(join(ROOT, 'service/linux/toolguard.service'), 'utf8');
  const words = (/^ExecStart=\S+\s+(.*)$/m.exec(unit)?.[1] ?? '').split(/\s+/);
  const script = words.findIndex((w) => w.endsWith('/bin/guardd.js'));
  if (script < 0) throw new Error('toolguard.service does not run bin/guardd.js');
  return words.slice(0, script);
}

/**
 * Writes a config for `dir` and starts guardd; resolves when its control socket answers.
 * `options.nodeArgs` go to node before guardd's script (e.g. the unit's heap cap).
 */
export async function startGuardd(
  dir: string,
  config: Record<string, unknown>,
  options: { nodeArgs?: readonly string[]; startTimeoutMs?: number; env?: Record<string, string> } = {},
): Promise<Guardd> {
  mkdirSync(dir, { recursive: true });
  const socketDir = join(dir, 'run');
  const stateDir = join(dir, 'state');
  const configFile = join(dir, 'config.json');
  const full = {
    'paths.state_dir': stateDir,
    'paths.socket_dir': socketDir,
    'log.level': 'warn',
    'sensors.install.enabled': false,
    'enforcement.notify_desktop': false,
    'shipper.interval_ms': 200,
    // Tests of the post-exec path need the banned program to start; pre-exec deny has its own
    // tests (test/enforcement/exec-deny.test.ts), which turn it on.
    'enforcement.exec_deny': 'off',
    ...config,
  };
  writeFileSync(configFile, JSON.stringify(full, null, 2));
  const child = spawn(
    process.execPath,
    [...(options.nodeArgs ?? []), BIN('guardd'), '--config', configFile],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
    },
  );
  const proc = track(child);
  let last: GuardctlResult | undefined;
  try {
    await waitFor(
      () => {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new WaitAborted(`guardd exited ${child.exitCode ?? child.signalCode}`);
        }
        last = runGuardctl(['--socket-dir', socketDir, 'status', '--json']);
        return last.code === 0 ? last : undefined;
      },
      'guardd to answer status',
      { intervalMs: 100, ...(options.startTimeoutMs ? { timeoutMs: options.startTimeoutMs } : {}) },
    );
  } catch (err) {
    await proc.stop('SIGKILL');
    // say what guardd printed and what guardctl last got, not only that time ran out
    throw new Error(
      `${(err as Error).message}\nguardd printed:\n${proc.output().slice(-4000)}\nguardctl last: ${last?.code} ${last?.stderr.slice(0, 500)}`,
    );
  }
  return { ...proc, socketDir, stateDir, configFile };
}

/**
 * guardd with pre-exec deny on (`enforcement.exec_deny: auto`) enforcing one block `rule`, signed
 * with a fresh key, in `dir`/guardd (`extra` settings on top): the pre-exec attack tests' daemon.
 */
export async function startDenyingGuardd(
  dir: string,
  rule: PolicyRule,
  extra: Record<string, unknown> = {},
): Promise<Guardd> {
  const key = makeKey();
  const policy = writeSignedPolicy(
    join(dir, 'policy.dsse.json'),
    policyBody([rule], { version: 3, mode: 'enforce' }),
    key,
  );
  return startGuardd(join(dir, 'guardd'), {
    'policy.trusted_keys': [key.publicKeyPem],
    'paths.bootstrap_policy': policy,
    'enforcement.exec_deny': 'auto',
    ...extra,
  });
}

/** guardd's pre-exec deny counters now (status `exec_deny.counters`). */
export async function execDenyCounters(g: Guardd): Promise<ExecPermCounters> {
  const s = await callDaemon<{ exec_deny: { counters: ExecPermCounters } }>(
    join(g.socketDir, 'guardd.sock'),
    'status',
  );
  return s.exec_deny.counters;
}

export interface GuardctlResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  json<T = Record<string, unknown>>(): T;
}

/** Runs guardctl as a real process. */
export function runGuardctl(args: readonly string[], env: Record<string, string> = {}): GuardctlResult {
  const r = spawnSync(process.execPath, [BIN('guardctl'), ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, ...env },
  });
  return {
    code: r.status,
    stdout: r.stdout,
    stderr: r.stderr,
    json: <T>() => JSON.parse(r.stdout) as T,
  };
}

/** One stored event as `guardctl events --json` lists it (the fields the process tests read). */
export interface ListedProcessEvent {
  readonly pid?: number;
  readonly exe?: string;
  readonly name?: string;
  readonly reason?: string;
  readonly rule?: { readonly id?: string };
  readonly outcome?: { readonly action_taken?: string; readonly details?: Record<string, unknown> };
}

/**
 * The stored events of `type` for rule `ruleId`, newest pages first, through the real
 * `guardctl events --json` (empty while guardd does not answer).
 */
export function ruleEvents(guardd: Guardd, type: string, ruleId: string, limit = 200): ListedProcessEvent[] {
  const r = runGuardctl([
    '--socket-dir',
    guardd.socketDir,
    '--json',
    'events',
    '--type',
    type,
    '--limit',
    String(limit),
  ]);
  if (r.code !== 0) return [];
  return r
    .json<{ events: { event: ListedProcessEvent }[] }>()
    .events.map((l) => l.event)
    .filter((e) => e.rule?.id === ruleId);
}
