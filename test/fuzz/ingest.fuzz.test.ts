/**
 * Fuzzing the collector's ingest parser (`parseBatch`, src/collector/ingest.ts): what one device
 * token posts to `POST /v1/events` is hostile. Random NDJSON bodies built from valid events of every
 * type, mutated (fields dropped, replaced by random JSON, `__proto__`/`constructor` keys, duplicate
 * keys, another device's id, odd times), mixed with random bytes, invalid UTF-8, blank and CRLF lines
 * and lines past the size cap. Every line is accepted (and its stored body re-serialises to
 * schema-valid JSON of the token's device) or rejected with a reason; the counts add up; no throw.
 * The same bodies through the collector's real parse path (ParsePool: a worker thread running
 * dist/collector/parse-worker.js, answers packed and unpacked) give the same result as parsing
 * in place. Needs `npm run build` (the worker runs dist/).
 * Seed and replay: test/fuzz/fuzz-params.ts.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_EVENT_BYTES, MAX_REJECTED_LISTED, parseBatch } from '../../src/collector/ingest.js';
import { ParsePool, packBatch, unpackBatch } from '../../src/collector/parse-pool.js';
import { validateEvent } from '../../src/events/event-schema.js';
import { EVENT_TYPES } from '../../src/events/event-types.js';
import { sampleEvent } from '../events/samples.js';
import { fuzzParams, testTimeout } from './fuzz-params.js';

const DEVICE = 'dev-1';
/** Cases after which the generator must have reached every outcome. */
const MIN_RUNS_FOR_COVERAGE = 150;
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers) await close();
});
const REASON = /^(invalid_json|not_an_object|too_large|device_mismatch: .+|schema: .+)$/;
const CLASSES = new Set(['invalid_json', 'not_an_object', 'too_large', 'device_mismatch', 'schema']);

const hostileKey = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', ''),
  fc.constantFrom('id', 'time', 'seq', 'device_id', 'type', 'rule', 'outcome', 'argv', 'policy_version'),
  fc.string({ maxLength: 12 }),
);

const oddTime = fc.constantFrom(
  '2026-11-24T23:59:60Z',
  '2026-02-30T00:00:00Z',
  '2024-02-29T00:00:00.123456Z',
  '2026-11-24T10:00:00+14:00',
  '2026-11-24T10:00:00.5-00:30',
  '0000-01-01T00:00:00Z',
  '9999-12-31T23:59:59.999Z',
  '2026-11-24 10:00:00Z',
  '',
);

type Mutation = (ev: Record<string, unknown>) => void;

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(hostileKey, fc.jsonValue({ maxDepth: 3 })).map(
    ([k, v]): Mutation =>
      (ev) => {
        Object.defineProperty(ev, k, { value: v, enumerable: true, writable: true, configurable: true });
      },
  ),
  hostileKey.map(
    (k): Mutation =>
      (ev) =>
        delete ev[k],
  ),
  fc.nat().map(
    (i): Mutation =>
      (ev) => {
        const keys = Object.keys(ev);
        if (keys.length) delete ev[keys[i % keys.length] as string];
      },
  ),
  fc.tuple(fc.nat(), fc.jsonValue({ maxDepth: 2 })).map(
    ([i, v]): Mutation =>
      (ev) => {
        const keys = Object.keys(ev);
        if (keys.length) ev[keys[i % keys.length] as string] = v;
      },
  ),
  fc.constantFrom('dev-2', '', 'DEV-1', 'dev-1 ').map(
    (d): Mutation =>
      (ev) => {
        ev.device_id = d;
      },
  ),
  oddTime.map(
    (t): Mutation =>
      (ev) => {
        ev.time = t;
      },
  ),
  fc.constantFrom(-1, 0, 1.5, 2 ** 53, Number.MAX_SAFE_INTEGER).map(
    (s): Mutation =>
      (ev) => {
        ev.seq = s;
      },
  ),
);

/** One NDJSON line (without its newline). */
const eventLine: fc.Arbitrary<string> = fc
  .record({
    type: fc.constantFrom(...EVENT_TYPES),
    seq: fc.integer({ min: 1, max: 1_000_000 }),
    mutations: fc.array(mutation, { maxLength: 3 }),
    form: fc.constantFrom('plain', 'plain', 'duplicate_device', 'padded', 'spliced'),
    splice: fc.tuple(fc.nat(), fc.nat({ max: 8 }), fc.string({ maxLength: 6 })),
  })
  .map(({ type, seq, mutations, form, splice }) => {
    const ev = sampleEvent(type, seq) as Record<string, unknown>;
    for (const m of mutations) m(ev);
    const json = JSON.stringify(ev);
    switch (form) {
      case 'duplicate_device':
        // JSON.parse keeps the last key; the stored body must not carry the other one
        return `{"device_id":"dev-2",${json.slice(1)}`.replace(/,}$/, '}');
      case 'padded':
        return ` \t${json}\t `;
      case 'spliced': {
        const [at, del, ins] = splice;
        const i = at % (json.length + 1);
        return json.slice(0, i) + ins + json.slice(i + del);
      }
      default:
        return json;
    }
  });

const junkLine: fc.Arbitrary<string | Buffer> = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v) ?? 'null'),
  fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b.filter((x) => x !== 0x0a))),
  fc.constantFrom('', ' ', '\r', '\u00a0', '\u2028', '{}', '[]', 'null', '{"__proto__":{"polluted":1}}'),
  // past the per-line cap: one huge string field, or a huge blank line
  fc.constantFrom(
    `{"id":"x","pad":"${'a'.repeat(MAX_EVENT_BYTES)}"}`,
    ' '.repeat(MAX_EVENT_BYTES + 1),
    '\u00e9'.repeat(Math.ceil(MAX_EVENT_BYTES / 2) + 1),
  ),
);

const body = fc
  .array(
    fc.tuple(fc.oneof({ weight: 3, arbitrary: eventLine }, { weight: 1, arbitrary: junkLine }), fc.boolean()),
    { maxLength: 25 },
  )
  .map((lines) => {
    const parts: Buffer[] = [];
    for (const [line, crlf] of lines) {
      parts.push(typeof line === 'string' ? Buffer.from(line) : line, Buffer.from(crlf ? '\r\n' : '\n'));
    }
    return Buffer.concat(parts);
  });

/** Lines parseBatch must account for: not blank once `\r` is dropped, or past the size cap. */
function countedLines(buf: Buffer): number {
  let n = 0;
  for (const raw of buf.toString('utf8').split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() !== '' || Buffer.byteLength(line) > MAX_EVENT_BYTES) n++;
  }
  return n;
}

describe('fuzz: collector ingest parser', () => {
  it(
    'every line of a random NDJSON body is accepted as schema-valid JSON of the device, or rejected with a reason',
    () => {
      let accepted = 0;
      let runs = 0;
      const seenClasses = new Set<string>();
      fc.assert(
        fc.property(body, (buf) => {
          runs++;
          const before = Object.keys(Object.prototype).length;
          const batch = parseBatch(buf, DEVICE);
          expect(Object.keys(Object.prototype)).toHaveLength(before);
          expect(({} as Record<string, unknown>).polluted).toBeUndefined();

          expect(batch.valid.length + batch.rejectedTotal).toBe(countedLines(buf));
          expect(batch.rejected).toHaveLength(Math.min(batch.rejectedTotal, MAX_REJECTED_LISTED));
          expect(Object.values(batch.rejectedByReason).reduce((a, b) => a + b, 0)).toBe(batch.rejectedTotal);
          for (const cls of Object.keys(batch.rejectedByReason)) {
            expect(CLASSES.has(cls)).toBe(true);
            seenClasses.add(cls);
          }
          accepted += batch.valid.length;
          for (const r of batch.rejected) {
            expect(r.reason).toMatch(REASON);
            if (r.id !== null) expect(r.id.length).toBeLessThanOrEqual(64);
          }
          for (const ev of batch.valid) {
            const stored = JSON.parse(ev.body) as Record<string, unknown>;
            expect(validateEvent(stored)).toEqual({ ok: true });
            expect(stored.device_id).toBe(DEVICE);
            expect(ev.body).not.toContain('"dev-2"');
            expect(stored.id).toBe(ev.id);
            expect(stored.seq).toBe(ev.seq);
            expect(ev.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
            expect(Number.isNaN(Date.parse(ev.time))).toBe(false);
          }
        }),
        fuzzParams(600, 6_000),
      );
      // the generator reaches both sides: valid events survive mutation, and every rejection class
      // occurs (checked once enough cases ran: a loaded machine may stop the campaign early)
      if (runs >= MIN_RUNS_FOR_COVERAGE) {
        expect(accepted).toBeGreaterThan(0);
        expect([...seenClasses].sort()).toEqual([...CLASSES].sort());
      }
    },
    testTimeout(6_000),
  );

  it(
    'the worker parse path (pack → worker → unpack) answers exactly what parseBatch answers in place',
    async () => {
      const pool = await ParsePool.start({ workers: 1 });
      closers.push(() => pool.close());
      await fc.assert(
        fc.asyncProperty(body, async (buf) => {
          const inPlace = parseBatch(buf, DEVICE);
          expect(unpackBatch(packBatch(inPlace))).toEqual(inPlace);
          // the pool may transfer the buffer to the worker: hand it a copy
          expect(await pool.parse(DEVICE, Buffer.from(buf))).toEqual(inPlace);
        }),
        fuzzParams(150, 5_000, 5_000),
      );
    },
    testTimeout(5_000),
  );

  it('unmutated events of every type are all accepted (the fuzzer starts from valid input)', () => {
    const lines = EVENT_TYPES.map((t, i) => JSON.stringify(sampleEvent(t, i + 1)));
    const batch = parseBatch(Buffer.from(`${lines.join('\r\n')}\n`), DEVICE);
    expect(batch.rejected).toEqual([]);
    expect(batch.valid).toHaveLength(EVENT_TYPES.length);
  });
});
