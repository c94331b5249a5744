/**
 * A real guard-collector for tests: started in-process on 127.0.0.1 with an ephemeral port, a
 * fresh SQLite file in a temp dir and random secrets. Also: enrolling a device and building
 * schema-valid events, so tests of any area can talk to a collector in two lines.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  type RunningCollector,
  type StartCollectorOptions,
  startCollector,
} from '../../src/collector/collector-server.js';
import { uuidv7 } from '../../src/common/uuidv7.js';
import { tempDir } from './tmp.js';

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
  const dir = tempDir('tg-col-');
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

/** NDJSON body of `events`. */
export function ndjson(events: readonly unknown[]): string {
  return `${events.map((e) => JSON.stringify(e)).join('\n')}\n`;
}
