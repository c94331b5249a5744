/**
 * A real guard-collector for tests: started in-process on 127.0.0.1 with an ephemeral port, a
 * fresh SQLite file in a temp dir and random secrets. Also: enrolling a device and building
 * schema-valid events, so tests of any area can talk to a collector in two lines.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import {
  type RunningCollector,
  type StartCollectorOptions,
  startCollector,
} from '../../src/collector/collector-server.js';
import type { StoredEventRow } from '../../src/collector/collector-store.js';
import type { ForwarderSink } from '../../src/collector/forwarders/forwarder.js';
import { uuidv7 } from '../../src/common/uuidv7.js';
import { WaitAborted, waitFor } from './wait.js';

const createdDirs: string[] = [];
// Registered when a test file imports this helper, i.e. on the file's root suite: it also removes
// directories made inside a test, where an afterAll of its own would be ignored. Root hooks run
// last (stack order), after the collectors of the file were closed.
afterAll(() => {
  for (const d of createdDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A fresh temp dir removed at the end of the test file, wherever it is created (hooks or tests). */
export function collectorTempDir(prefix = 'tg-col-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  createdDirs.push(dir);
  return dir;
}

export interface TestCollector {
  readonly url: string;
  readonly adminToken: string;
  readonly enrollSecret: string;
  readonly dbFile: string;
  readonly collector: RunningCollector;
  close(): Promise<void>;
}

/** Starts a collector on 127.0.0.1:0. `overrides` may replace any option (dbFile, policyFile, …). */
export async function startTestCollector(
  overrides: Partial<StartCollectorOptions> = {},
): Promise<TestCollector> {
  const dir = collectorTempDir('tg-col-');
  const enrollSecret = randomBytes(24).toString('base64url');
  const adminToken = randomBytes(24).toString('base64url');
  const options: StartCollectorOptions = {
    host: '127.0.0.1',
    port: 0,
    dbFile: join(dir, 'collector.db'),
    enrollSecret,
    adminToken,
    ...overrides,
  };
  const collector = await startCollector(options);
  return {
    url: collector.url,
    adminToken: options.adminToken,
    enrollSecret: options.enrollSecret,
    dbFile: options.dbFile,
    collector,
    close: () => collector.close(),
  };
}

/** Enrolls `deviceId` and returns its bearer token. */
export async function enrollDevice(url: string, enrollSecret: string, deviceId: string): Promise<string> {
  const res = await fetch(`${url}/v1/enroll`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      enroll_secret: enrollSecret,
      device: { id: deviceId, hostname: `${deviceId}.test`, os: 'linux', agent_version: '0.1.0' },
    }),
  });
  if (res.status !== 200) throw new Error(`enroll failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { device_token: string }).device_token;
}

/** A schema-valid `agent.heartbeat` event of `deviceId`. */
export function heartbeatEvent(
  deviceId: string,
  seq: number,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    id: uuidv7(),
    time: new Date().toISOString(),
    seq,
    device_id: deviceId,
    hostname: `${deviceId}.test`,
    type: 'agent.heartbeat',
    agent_version: '0.1.0',
    uptime_s: 12.5,
    policy_version: 7,
    policy_state: 'ok',
    outbox_depth: 0,
    dropped_total: 0,
    counts: { blocked: 1, warned: 0 },
    sensors: { process: true, install: true },
    ...extra,
  };
}

/** A schema-valid `process.blocked` event of `deviceId` for rule `ruleId`. */
export function blockedEvent(deviceId: string, seq: number, ruleId = 'claude-code'): Record<string, unknown> {
  return {
    id: uuidv7(),
    time: new Date().toISOString(),
    seq,
    device_id: deviceId,
    hostname: `${deviceId}.test`,
    type: 'process.blocked',
    agent_version: '0.1.0',
    uid: 1000,
    user: 'alice',
    pid: 4242,
    ppid: 1,
    name: 'claude',
    exe: '/usr/local/bin/claude',
    argv: ['claude', '--help'],
    start_time: 123456,
    tty: null,
    rule: { id: ruleId, name: 'Claude Code', action: 'block' },
    reason: 'name',
    policy_version: 7,
    mode: 'enforce',
    outcome: { action_taken: 'killed', latency_ms: 3, error: null },
  };
}

/** A schema-valid `policy.shadow_match` event of `deviceId`: shadow `version`'s rule `ruleId` would block a process. */
export function shadowMatchEvent(
  deviceId: string,
  seq: number,
  ruleId: string,
  version: number,
): Record<string, unknown> {
  const { outcome: _o, policy_version: _p, ...process } = blockedEvent(deviceId, seq, ruleId);
  return {
    ...process,
    type: 'policy.shadow_match',
    pid: 5000 + seq,
    subject_kind: 'process',
    shadow_version: version,
    would: 'block',
    enforced: { act: 'none', rule_id: null, policy_version: version - 1 },
  };
}

/** NDJSON body of `events`. */
export function ndjson(events: readonly unknown[]): string {
  return `${events.map((e) => JSON.stringify(e)).join('\n')}\n`;
}

/** POST /v1/events of `events` as NDJSON with a device token. */
export async function postEvents(url: string, token: string, events: readonly unknown[]): Promise<Response> {
  return fetch(`${url}/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
    body: ndjson(events),
  });
}

/** A forwarder sink that keeps what it was given (the raw stored rows). */
export class RecordingSink implements ForwarderSink {
  readonly name = 'recording';
  readonly rows: StoredEventRow[] = [];
  async deliver(events: readonly StoredEventRow[]) {
    this.rows.push(...events);
    return { dropped: 0 };
  }
  async close(): Promise<void> {}
}

export interface CollectorProcess {
  readonly url: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly enrollSecret: string;
  readonly adminToken: string;
  readonly dbFile: string;
  /** Everything the process wrote to stderr so far (its pino log). */
  stderr(): string;
  /** SIGTERM and wait for the exit code (graceful close). */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
}

/** Repository root: bin/guard-collector.js imports the built dist/ (run `npm run build` first). */
const BIN = fileURLToPath(new URL('../../bin/guard-collector.js', import.meta.url));

/**
 * Starts `bin/guard-collector.js` as a real child process on 127.0.0.1:0 (from dist/) and resolves
 * with its URL once it printed `guard-collector listening on <url>`. Secrets go through the env.
 * `args` are extra flags; `dbFile` reuses a database (restart tests).
 */
export async function spawnCollectorProcess(
  options: {
    args?: readonly string[];
    dbFile?: string;
    enrollSecret?: string;
    adminToken?: string;
    env?: Record<string, string>;
  } = {},
): Promise<CollectorProcess> {
  const dbFile = options.dbFile ?? join(collectorTempDir('tg-colp-'), 'collector.db');
  const enrollSecret = options.enrollSecret ?? randomBytes(24).toString('base64url');
  const adminToken = options.adminToken ?? randomBytes(24).toString('base64url');
  const proc = spawn(
    process.execPath,
    [BIN, '--listen', '127.0.0.1:0', '--db', dbFile, '--log-level', 'warn', ...(options.args ?? [])],
    {
      env: {
        PATH: process.env.PATH ?? '',
        TOOLGUARD_COLLECTOR_ENROLL_SECRET: enrollSecret,
        TOOLGUARD_COLLECTOR_ADMIN_TOKEN: adminToken,
        ...options.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  proc.stdout?.setEncoding('utf8').on('data', (s: string) => {
    out += s;
  });
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => {
    err += s;
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  // all of stderr, once the process is gone (its exit may be seen before the pipe is drained)
  const stderrDone = new Promise<void>((resolve) => proc.once('close', () => resolve()));
  const url = await waitFor(
    async () => {
      if (proc.exitCode !== null) {
        await stderrDone;
        throw new WaitAborted(`guard-collector exited ${proc.exitCode}: ${err}`);
      }
      return /guard-collector listening on (\S+)/.exec(out)?.[1];
    },
    'guard-collector to print its URL',
    { timeoutMs: 15_000 },
  );
  return {
    url,
    proc,
    pid: proc.pid as number,
    enrollSecret,
    adminToken,
    dbFile,
    stderr: () => err,
    stop: async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** Resident set size of `pid` in bytes (Linux /proc; undefined elsewhere). */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
