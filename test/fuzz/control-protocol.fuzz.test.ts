/**
 * Fuzzing the control protocol (src/control/protocol.ts, parsed and answered by
 * src/control/control-server.ts): the public socket is open to every local user, so each byte on
 * it is hostile. A real ControlServer on real Unix sockets in a temp dir, with guardd's real method
 * handlers (events.list over a real SQLite outbox, policy.* over a real PolicyManager,
 * quarantine.* over a real QuarantineStore) and a status method. Random bytes, random JSON, random
 * method/params shapes and prototype names, oversized lines, all split at random boundaries:
 * every complete request line gets one answer, in order, that is `ok` or carries a documented
 * error code (ERROR_CODES); a protocol error closes the connection; nothing throws or crashes the
 * server, and a well-formed status request on a new connection still answers afterwards.
 * Seed and replay: test/fuzz/fuzz-params.ts.
 */
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { callDaemon } from '../../src/control/control-client.js';
import { ControlServer } from '../../src/control/control-server.js';
import { MAX_REQUEST_BYTES } from '../../src/control/protocol.js';
import { quarantineControlMethods } from '../../src/enforcement/quarantine-control.js';
import { QuarantineStore } from '../../src/enforcement/quarantine-store.js';
import { EVENT_TYPES } from '../../src/events/event-types.js';
import { policyControlMethods } from '../../src/policy/policy-updater.js';
import { openDatabase } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { eventsControlMethods, OutboxStore } from '../../src/store/outbox-store.js';
import { sampleFields } from '../events/samples.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import { makeManager, newKey } from '../policy/policy-helpers.js';
import { fuzzParams, testTimeout } from './fuzz-params.js';

const dir = tempDir('tgfz-ctl-');
const pub = join(dir, 'guardd.sock');
const admin = join(dir, 'admin.sock');
let server: ControlServer;
const closers: (() => void)[] = [];

beforeAll(async () => {
  const { db } = openDatabase(join(dir, 'state.db'), { migrations: MIGRATIONS });
  const outbox = new OutboxStore({
    db,
    deviceId: 'dev-fuzz',
    hostname: 'h',
    maxBytes: 1 << 24,
    logger: silentLogger(),
  });
  for (const [i, type] of EVENT_TYPES.entries()) if (i % 3 === 0) outbox.emit(type, sampleFields(type));
  const quarantine = new QuarantineStore({ db, quarantineDir: join(dir, 'q'), logger: silentLogger() });
  const harness = makeManager(join(dir, 'policy'), [newKey()]);
  closers.push(
    () => harness.close(),
    () => db.close(),
  );
  server = new ControlServer({
    publicPath: pub,
    adminPath: admin,
    logger: silentLogger(),
    methods: {
      status: { admin: false, summary: 'status', handle: () => ({ running: true, pid: process.pid }) },
      ...eventsControlMethods(outbox),
      ...policyControlMethods(null, harness.manager),
      ...quarantineControlMethods(quarantine, { stillBanned: () => false }),
    },
  });
  await server.start();
});

afterAll(async () => {
  await server?.stop();
  for (const close of closers) close();
});

const METHODS = [
  'status',
  'events.list',
  'policy.show',
  'policy.reload',
  'quarantine.list',
  'quarantine.restore',
  '__proto__',
  'constructor',
  'hasOwnProperty',
  'toString',
  '',
];

/** A params value: right keys with random values, prototype keys, or any JSON. */
const params = fc.oneof(
  fc.record(
    {
      since_seq: fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 5 }), fc.constant(null)),
      since_time: fc.oneof(
        fc.date({ noInvalidDate: false }).map((d) => (Number.isNaN(d.getTime()) ? 'x' : d.toISOString())),
        fc.string({ maxLength: 50 }),
        fc.constantFrom('+275760-09-13T00:00:00.000Z', '-271821-04-20T00:00:00Z', '2026-02-30'),
      ),
      type: fc.oneof(fc.constantFrom(...EVENT_TYPES), fc.string({ maxLength: 8 })),
      limit: fc.oneof(fc.integer({ min: -2, max: 100_000 }), fc.double(), fc.constant('10')),
      oldest_first: fc.oneof(fc.boolean(), fc.jsonValue({ maxDepth: 1 })),
      id: fc.oneof(fc.string({ maxLength: 80 }), fc.jsonValue({ maxDepth: 1 })),
      force: fc.oneof(fc.boolean(), fc.jsonValue({ maxDepth: 1 })),
      all: fc.jsonValue({ maxDepth: 1 }),
    },
    { requiredKeys: [] },
  ),
  fc.jsonValue({ maxDepth: 3 }),
  fc.constant('__proto__'),
);

/** One request line's text (no newline), or raw bytes. */
const requestLine: fc.Arbitrary<string | Buffer> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .record(
        {
          id: fc.oneof(fc.nat(), fc.integer(), fc.double(), fc.string({ maxLength: 4 }), fc.constant(null)),
          method: fc.oneof(
            fc.constantFrom(...METHODS),
            fc.string({ maxLength: 20 }),
            fc.jsonValue({ maxDepth: 1 }),
          ),
          params,
        },
        { requiredKeys: ['method'] },
      )
      .map((r) =>
        r.params === '__proto__'
          ? `{"id":${JSON.stringify(r.id ?? 1)},"method":${JSON.stringify(r.method)},"params":{"__proto__":{"limit":1}}}`
          : JSON.stringify(r),
      ),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v) ?? 'null') },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', ' ', '\r', '\t', '\u00a0', '{}', '[]', 'null', '{"method":1}'),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: MAX_REQUEST_BYTES - 2, max: MAX_REQUEST_BYTES + 2 })
      .map((n) => `{"id":7,"method":"status","params":{"pad":"${'a'.repeat(Math.max(0, n - 48))}"}}`),
  },
);

/** A request sequence as bytes, and where to cut it into writes. */
const session = fc.record({
  lines: fc.array(fc.tuple(requestLine, fc.constantFrom('\n', '\n', '\r\n')), { minLength: 1, maxLength: 8 }),
  trailing: fc.oneof(fc.constant(''), fc.string({ maxLength: 10 })),
  cuts: fc.array(fc.nat(), { maxLength: 6 }),
  adminSocket: fc.boolean(),
});

type Session = typeof session extends fc.Arbitrary<infer T> ? T : never;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** What a line should be answered with, from the protocol's contract; null = no answer (blank line). */
type Expectation = { kind: 'answer'; id: number | null } | { kind: 'protocol_error' } | null;

function expectationOf(raw: Buffer): Expectation {
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch {
    return { kind: 'protocol_error' };
  }
  if (text.trim() === '') return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { kind: 'protocol_error' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { kind: 'protocol_error' };
  const r = v as Record<string, unknown>;
  const p = r.params ?? {};
  if (typeof r.method !== 'string' || typeof p !== 'object' || p === null || Array.isArray(p))
    return { kind: 'protocol_error' };
  return { kind: 'answer', id: typeof r.id === 'number' && Number.isSafeInteger(r.id) ? r.id : null };
}

interface Answer {
  id: unknown;
  ok: unknown;
  result?: unknown;
  error?: { code: unknown; message: unknown };
}

/** Plays one session on a fresh connection and checks every answer against the contract. */
async function playSession({ lines, trailing, cuts, adminSocket }: Session): Promise<void> {
  const payload = Buffer.concat([
    ...lines.flatMap(([l, nl]) => [typeof l === 'string' ? Buffer.from(l) : Buffer.from(l), Buffer.from(nl)]),
    Buffer.from(trailing),
  ]);
  // The contract, line by line, up to the first protocol error: the server closes there, so
  // the client sends nothing after it (writing into a closed socket makes a Node client drop
  // answers it had not read yet: that would be the client's loss, not the server's).
  const expected: Exclude<Expectation, null>[] = [];
  let start = 0;
  let sendBytes = payload.length;
  for (;;) {
    const nl = payload.indexOf(0x0a, start);
    const lineLength = (nl < 0 ? payload.length : nl) - start;
    if (lineLength > MAX_REQUEST_BYTES) {
      // cut as soon as the server holds more than the cap of one line, newline or not
      expected.push({ kind: 'protocol_error' });
      sendBytes = start + MAX_REQUEST_BYTES + 1;
      break;
    }
    if (nl < 0) break;
    const e = expectationOf(payload.subarray(start, nl));
    start = nl + 1;
    if (e === null) continue;
    expected.push(e);
    if (e.kind === 'protocol_error') {
      sendBytes = start;
      break;
    }
  }
  const endsInError = expected.at(-1)?.kind === 'protocol_error';

  const answers: Answer[] = [];
  let closed = false;
  const socket: Socket = createConnection(adminSocket ? admin : pub);
  let buf = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      answers.push(JSON.parse(buf.slice(0, nl)) as Answer);
      buf = buf.slice(nl + 1);
    }
  });
  socket.on('error', () => undefined); // a reset after a protocol error is a close
  socket.on('close', () => {
    closed = true;
  });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  try {
    const points = [...new Set(cuts.map((c) => c % (sendBytes + 1)))].sort((a, b) => a - b);
    let from = 0;
    for (const at of [...points, sendBytes]) {
      if (closed) break;
      const chunk = payload.subarray(from, at);
      from = at;
      if (chunk.length === 0) continue;
      await new Promise<void>((resolve) => socket.write(chunk, () => resolve()));
      await new Promise((r) => setImmediate(r));
    }
    await waitFor(
      () => answers.length >= expected.length && (!endsInError || closed),
      `${expected.length} answers${endsInError ? ' and a close' : ''} (got ${answers.length})`,
      { timeoutMs: 8_000, intervalMs: 5 },
    );
    expect(answers).toHaveLength(expected.length);
    for (const [i, a] of answers.entries()) {
      const e = expected[i] as Exclude<Expectation, null>;
      expect(typeof a.ok).toBe('boolean');
      if (a.ok === false) {
        expect(Object.keys(ERROR_CODES)).toContain(a.error?.code);
        expect(typeof a.error?.message).toBe('string');
      } else expect(a).toHaveProperty('result');
      if (e.kind === 'protocol_error') {
        expect(a).toMatchObject({ ok: false, error: { code: 'GUARD_CONTROL_BAD_REQUEST' } });
      } else {
        expect(a.id).toBe(e.id);
      }
    }
  } finally {
    socket.destroy();
  }
}

describe('fuzz: control protocol over a real socket', () => {
  it(
    'random request bytes split at random boundaries: every line answered in order with ok or a documented code',
    async () => {
      await fc.assert(
        fc.asyncProperty(session, async (s) => {
          await playSession(s);
          // the daemon still answers a well-formed status request
          const status = await callDaemon(pub, 'status', {}, 8_000);
          expect(status).toMatchObject({ running: true });
        }),
        fuzzParams(300, 8_000, 20_000),
      );
      // every client of the campaign closed: the server holds no connection of theirs
      await waitFor(() => server.stats().connections === 0, 'all fuzz connections released');
    },
    testTimeout(8_000),
  );

  it(
    'concurrent hostile sessions on both sockets: each answered by the contract, the server keeps serving',
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(session, { minLength: 2, maxLength: 6 }), async (sessions) => {
          await Promise.all(sessions.map((s) => playSession(s)));
          const status = await callDaemon(pub, 'status', {}, 8_000);
          expect(status).toMatchObject({ running: true });
        }),
        fuzzParams(60, 6_000, 30_000),
      );
      await waitFor(() => server.stats().connections === 0, 'all fuzz connections released');
    },
    testTimeout(6_000),
  );
});
