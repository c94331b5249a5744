/** Shared builders for the policy tests: keys, bodies, signed envelopes, a manager on a real SQLite file. */

import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { silentLogger } from '../../src/common/logger.js';
import { signEnvelope } from '../../src/policy/dsse.js';
import { generateKeyPair, parsePrivateKey } from '../../src/policy/keys.js';
import type { Matcher } from '../../src/policy/matcher.js';
import { PolicyManager, type PolicyManagerOptions } from '../../src/policy/policy-manager.js';
import { POLICY_PAYLOAD_TYPE, type PolicyBody, type VerifiedPolicy } from '../../src/policy/policy-types.js';
import type { ProcessObservation } from '../../src/sensors/observation.js';
import { openDatabase, StateStore } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { MemoryEventSink } from '../helpers/event-sink.js';

/** The fixed "now" of the policy tests: 2026-11-24T12:00:00Z. */
export const NOW = Date.parse('2026-11-24T12:00:00Z');
const DAY = 86_400_000;

export interface TestKey {
  readonly pem: string;
  readonly base64: string;
  readonly keyid: string;
  readonly priv: KeyObject;
  readonly privatePem: string;
}

export function newKey(): TestKey {
  const k = generateKeyPair();
  return {
    pem: k.publicKeyPem,
    base64: k.publicKeyBase64,
    keyid: k.keyid,
    priv: parsePrivateKey(k.privateKeyPem),
    privatePem: k.privateKeyPem,
  };
}

/** A body of one rule per path glob (`r0`, `r1`, …, all `action`), no exceptions. */
export function pathRulesBody(globs: readonly string[], action: 'block' | 'audit' = 'audit'): PolicyBody {
  return {
    schema: 'toolguard.policy/v1',
    version: 1,
    issued_at: '2026-01-01T00:00:00Z',
    expires_at: '2036-01-01T00:00:00Z',
    mode: 'enforce',
    rules: globs.map((g, i) => ({ id: `r${i}`, name: `R${i}`, action, message: 'm', paths: [g] })),
    exceptions: [],
  };
}

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.000Z$/, 'Z');

/** A valid body: one block rule for `claude`, valid NOW-1d … NOW+14d. */
export function body(
  version: number,
  overrides: Partial<Record<keyof PolicyBody, unknown>> = {},
): PolicyBody {
  return {
    schema: 'toolguard.policy/v1',
    version,
    issued_at: iso(NOW - DAY),
    expires_at: iso(NOW + 14 * DAY),
    mode: 'enforce',
    rules: [
      {
        id: 'claude-code',
        name: 'Claude Code',
        action: 'block',
        message: 'Claude Code is not approved on company machines.',
        url: 'https://intranet.example/ai-tools',
        process: {
          names: ['claude'],
          exe_globs: ['**/node_modules/@anthropic-ai/claude-code/**'],
          script_packages: ['@anthropic-ai/claude-code'],
        },
        packages: [{ ecosystem: 'npm', name: '@anthropic-ai/claude-code', range: '*' }],
        paths: ['~/.local/share/claude/versions/*'],
      },
    ],
    exceptions: [],
    ...overrides,
  } as PolicyBody;
}

/** Signs a body (object → JSON, string/Buffer as is) into envelope text. */
export function sign(
  b: PolicyBody | string | Buffer,
  keys: readonly TestKey[],
  payloadType: string = POLICY_PAYLOAD_TYPE,
): string {
  const payload = typeof b === 'string' || Buffer.isBuffer(b) ? b : JSON.stringify(b);
  return JSON.stringify(
    signEnvelope(
      payload,
      payloadType,
      keys.map((k) => k.priv),
    ),
  );
}

/** A process observation of a program named `name`. */
export function proc(name: string, exe: string | null = `/usr/local/bin/${name}`): ProcessObservation {
  return {
    kind: 'process',
    pid: 4242,
    ppid: 1,
    startTime: 1,
    name,
    exe,
    argv: [name],
    owner: { uid: 1000, user: 'dev', groups: [], home: '/home/dev' },
    tty: null,
  };
}

export const CTX = { now: NOW, hostname: 'laptop-1', deviceTags: [] as string[] };

export interface ManagerHarness {
  readonly manager: PolicyManager;
  readonly events: MemoryEventSink;
  /** Every matcher handed to onChange, in order. */
  readonly swaps: { matcher: Matcher; policy: VerifiedPolicy | null }[];
  readonly clock: { now: number };
  readonly dbFile: string;
  close(): void;
}

/** A PolicyManager on a real SQLite file in `dir` (re-opening the same dir = a daemon restart). */
export function makeManager(
  dir: string,
  trusted: readonly TestKey[],
  extra: Partial<PolicyManagerOptions> & { clock?: { now: number } } = {},
): ManagerHarness {
  const dbFile = join(dir, 'state.db');
  const { db } = openDatabase(dbFile, { migrations: MIGRATIONS, synchronous: 'NORMAL' });
  const events = new MemoryEventSink();
  const swaps: ManagerHarness['swaps'] = [];
  const clock = extra.clock ?? { now: NOW };
  const manager = new PolicyManager({
    state: new StateStore(db),
    db,
    trustedKeys: trusted.map((k, i) => (i % 2 === 0 ? k.pem : k.base64)),
    threshold: 1,
    clockSkewS: 300,
    maxBytes: 1024 * 1024,
    platform: 'linux',
    homes: () => ['/home/dev'],
    events,
    logger: silentLogger(),
    now: () => clock.now,
    onChange: (matcher, policy) => swaps.push({ matcher, policy }),
    ...extra,
  });
  return { manager, events, swaps, clock, dbFile, close: () => db.close() };
}
