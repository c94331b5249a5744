/**
 * The collector's /metrics on prom-client (issue 17): the scrape is valid Prometheus text (strict
 * line parser below), carries the process metrics, counts events per type and per rule with label
 * values bounded by the schema's types and the published policy's rule ids (a rule id the policy
 * lacks counts as `other`, so a hostile agent cannot add series), and has the ingest and forwarder
 * delivery latency histograms. Real collectors over loopback, real HTTP, real SQLite, a real
 * signed policy file (republished by rename, as an admin does).
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredEventRow } from '../../src/collector/collector-store.js';
import type { ForwarderSink } from '../../src/collector/forwarders/forwarder.js';
import { CollectorMetrics } from '../../src/collector/metrics.js';
import {
  blockedEvent,
  collectorTempDir,
  enrollDevice,
  heartbeatEvent,
  postEvents,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';
import { waitFor } from '../helpers/wait.js';
import { body, newKey, sign } from '../policy/policy-helpers.js';

const P = 'toolguard_collector_';

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

interface Family {
  readonly type: string;
  readonly samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(v: string, line: string): number {
  if (/^[+-]?inf$/i.test(v)) return v.startsWith('-') ? -Infinity : Infinity;
  if (/^nan$/i.test(v)) return Number.NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v)) throw new Error(`bad value in: ${line}`);
  return Number(v);
}

/** The family a sample belongs to: histogram/summary samples carry a suffix. */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  for (const s of ['', '_bucket', '_sum', '_count']) {
    if (s !== '' && !name.endsWith(s)) continue;
    const f = families.get(name.slice(0, name.length - s.length));
    if (f && (s === '' || f.type === 'histogram' || (f.type === 'summary' && s !== '_bucket'))) return f;
  }
  return undefined;
}

/**
 * Parses the text exposition format 0.0.4 strictly: every sample belongs to a family whose HELP
 * and TYPE came first, names and labels have the allowed syntax, values are numbers, no series
 * appears twice, and every histogram's buckets are cumulative and end with +Inf = _count.
 * Throws on the first violation.
 */
function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition does not end with a newline');
  const families = new Map<string, Family>();
  const helped = new Set<string>();
  const seen = new Set<string>();
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`bad metric name: ${line}`);
      if (kind === 'HELP') {
        if (helped.has(name)) throw new Error(`HELP twice: ${name}`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`bad HELP escape: ${line}`);
        helped.add(name);
      } else {
        if (families.has(name)) throw new Error(`TYPE twice: ${name}`);
        if (!TYPES.has(rest)) throw new Error(`bad TYPE: ${line}`);
        if (!helped.has(name)) throw new Error(`TYPE before HELP: ${name}`);
        families.set(name, { type: rest, samples: [] });
      }
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([^{\s]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const [, name, labelText = '', raw] = m as unknown as [string, string, string | undefined, string];
    if (!NAME.test(name)) throw new Error(`bad sample name: ${line}`);
    const labels: Record<string, string> = {};
    let rest = labelText;
    while (rest !== '') {
      const l = LABEL.exec(rest);
      if (!l) throw new Error(`bad labels: ${line}`);
      const [all, k, v] = l as unknown as [string, string, string];
      if (k in labels) throw new Error(`label twice: ${line}`);
      labels[k] = v;
      rest = rest.slice(all.length);
    }
    const family = familyOf(name, families);
    if (!family) throw new Error(`sample before its TYPE: ${line}`);
    const series = `${name}{${Object.entries(labels)
      .sort()
      .map(([k, v]) => `${k}=${v}`)
      .join(',')}}`;
    if (seen.has(series)) throw new Error(`series twice: ${series}`);
    seen.add(series);
    family.samples.push({ name, labels, value: parseValue(raw, line) });
  }
  for (const [name, f] of families) {
    if (f.type !== 'histogram') continue;
    const series = new Map<string, { le: number; v: number }[]>();
    const counts = new Map<string, number>();
    for (const s of f.samples) {
      const { le, ...rest } = s.labels;
      const key = JSON.stringify(Object.entries(rest).sort());
      if (s.name === `${name}_bucket`) {
        if (le === undefined) throw new Error(`bucket without le: ${name}`);
        series.set(key, [...(series.get(key) ?? []), { le: parseValue(le, le), v: s.value }]);
      } else if (s.name === `${name}_count`) counts.set(key, s.value);
    }
    for (const [key, buckets] of series) {
      buckets.sort((a, b) => a.le - b.le);
      for (let i = 1; i < buckets.length; i++)
        if (buckets[i]!.v < buckets[i - 1]!.v) throw new Error(`buckets not cumulative: ${name} ${key}`);
      const last = buckets[buckets.length - 1]!;
      if (last.le !== Infinity || last.v !== counts.get(key))
        throw new Error(`+Inf bucket missing or != _count: ${name} ${key}`);
    }
  }
  return families;
}

/** The value of `name{labels}` (labels compared as a set), or undefined when the series is absent. */
function sampleValue(
  f: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const family = familyOf(name, f);
  const want = Object.entries(labels);
  return family?.samples.find(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).length === want.length &&
      want.every(([k, v]) => s.labels[k] === v),
  )?.value;
}

async function scrape(c: TestCollector): Promise<Map<string, Family>> {
  const res = await fetch(`${c.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(await res.text());
}

/** Fails its first delivery, then keeps what it is given: both outcomes of the latency histogram. */
class FailOnceSink implements ForwarderSink {
  readonly name = 'fail-once';
  readonly rows: StoredEventRow[] = [];
  private failed = false;
  async deliver(events: readonly StoredEventRow[]) {
    if (!this.failed) {
      this.failed = true;
      throw new Error('destination down (first attempt)');
    }
    this.rows.push(...events);
    return { dropped: 0 };
  }
  async close(): Promise<void> {}
}

const key = newKey();
let policyFile: string;
let c: TestCollector;
let other: TestCollector;
let sink: FailOnceSink;

/** Publishes a policy with these rule ids the way an admin does (write aside, rename over). */
function publish(version: number, ids: readonly string[]): void {
  const rule = body(1).rules[0]!;
  const b = body(version, { rules: ids.map((id) => ({ ...rule, id })) });
  writeFileSync(`${policyFile}.new`, sign(b, [key]));
  renameSync(`${policyFile}.new`, policyFile);
}

beforeAll(async () => {
  policyFile = join(collectorTempDir('tg-col-metrics-'), 'policy.json');
  publish(1, ['claude-code', 'cursor']);
  sink = new FailOnceSink();
  c = await startTestCollector({
    policyFile,
    forwarders: { extra: [sink], backoffInitialMs: 10, backoffMaxMs: 50 },
  });
  other = await startTestCollector();
});
afterAll(async () => {
  await c?.close();
  await other?.close();
});

describe('/metrics on prom-client', () => {
  it('is valid Prometheus text with the process metrics under the collector prefix', async () => {
    expect((await fetch(`${c.url}/healthz`)).status).toBe(200); // http_requests_total starts at the first answer
    const f = await scrape(c);
    for (const [name, type] of [
      ['process_cpu_seconds_total', 'counter'],
      ['process_resident_memory_bytes', 'gauge'],
      ['process_open_fds', 'gauge'],
      ['nodejs_heap_size_used_bytes', 'gauge'],
      ['nodejs_eventloop_lag_seconds', 'gauge'],
      ['nodejs_eventloop_lag_p99_seconds', 'gauge'],
      ['nodejs_gc_duration_seconds', 'histogram'],
      // the collector's own families, under their names from before prom-client
      ['http_requests_total', 'counter'],
      ['request_duration_seconds', 'histogram'],
      ['forward_dead_letter_total', 'counter'],
      ['devices', 'gauge'],
      ['ingest_queue_depth', 'gauge'],
      ['events_ingested_total', 'counter'],
      ['events_by_rule_total', 'counter'],
      ['ingest_duration_seconds', 'histogram'],
      ['forward_delivery_duration_seconds', 'histogram'],
    ] as const)
      expect(f.get(`${P}${name}`)?.type, name).toBe(type);
    expect(sampleValue(f, `${P}process_resident_memory_bytes`)).toBeGreaterThan(0);
    expect(sampleValue(f, `${P}process_cpu_seconds_total`)).toBeGreaterThan(0);
    // every event type of the schema is visible (at 0) before the first event
    expect(sampleValue(f, `${P}events_ingested_total`, { type: 'agent.tamper' })).toBe(0);
    // nothing outside the prefix: prom-client's global registry is not what is served
    for (const name of f.keys()) expect(name.startsWith(P), name).toBe(true);
  });

  it('counts events by type and by published rule; a rule id the policy lacks counts as "other"', async () => {
    const token = await enrollDevice(c.url, c.enrollSecret, 'dev-metrics-a');
    const hostile = Array.from({ length: 40 }, (_, i) => `not-in-policy-${i}-${Date.now()}`);
    const events = [
      blockedEvent('dev-metrics-a', 1, 'claude-code'),
      blockedEvent('dev-metrics-a', 2, 'claude-code'),
      blockedEvent('dev-metrics-a', 3, 'cursor'),
      ...hostile.map((id, i) => blockedEvent('dev-metrics-a', 10 + i, id)),
      heartbeatEvent('dev-metrics-a', 100),
    ];
    expect((await postEvents(c.url, token, events)).status).toBe(200);

    const f = await scrape(c);
    expect(sampleValue(f, `${P}events_by_rule_total`, { rule: 'claude-code' })).toBe(2);
    expect(sampleValue(f, `${P}events_by_rule_total`, { rule: 'cursor' })).toBe(1);
    expect(sampleValue(f, `${P}events_by_rule_total`, { rule: 'other' })).toBe(40);
    expect(f.get(`${P}events_by_rule_total`)?.samples).toHaveLength(3);
    expect(sampleValue(f, `${P}events_ingested_total`, { type: 'process.blocked' })).toBe(43);
    expect(sampleValue(f, `${P}events_ingested_total`, { type: 'agent.heartbeat' })).toBe(1);
    expect(sampleValue(f, `${P}events_accepted_total`)).toBe(44);
    // one stored batch, one ingest latency observation
    expect(sampleValue(f, `${P}ingest_duration_seconds_count`)).toBe(1);
    expect(sampleValue(f, `${P}ingest_duration_seconds_sum`)).toBeGreaterThan(0);

    // a newly published rule gets its own series at once; a dropped one is "other" from then on
    publish(2, ['claude-code', 'windsurf']);
    const more = [
      blockedEvent('dev-metrics-a', 200, 'windsurf'),
      blockedEvent('dev-metrics-a', 201, 'cursor'),
    ];
    expect((await postEvents(c.url, token, more)).status).toBe(200);
    const g = await scrape(c);
    expect(sampleValue(g, `${P}events_by_rule_total`, { rule: 'windsurf' })).toBe(1);
    expect(sampleValue(g, `${P}events_by_rule_total`, { rule: 'cursor' })).toBe(1);
    expect(sampleValue(g, `${P}events_by_rule_total`, { rule: 'other' })).toBe(41);
  });

  it('keeps each collector’s counters apart (a registry per instance)', async () => {
    const f = await scrape(other);
    expect(sampleValue(f, `${P}events_accepted_total`) ?? 0).toBe(0);
    expect(sampleValue(f, `${P}events_ingested_total`, { type: 'process.blocked' })).toBe(0);
    expect(f.get(`${P}events_by_rule_total`)?.samples).toHaveLength(0);
    // the process metrics are the same process's
    expect(sampleValue(f, `${P}process_start_time_seconds`)).toBe(
      sampleValue(await scrape(c), `${P}process_start_time_seconds`),
    );
  });

  it('times forwarder deliveries per sink and outcome', async () => {
    await waitFor(() => sink.rows.length >= 44, 'the events forwarded after the failed first attempt');
    const f = await scrape(c);
    const count = (outcome: string) =>
      sampleValue(f, `${P}forward_delivery_duration_seconds_count`, { sink: 'fail-once', outcome });
    expect(count('error')).toBe(1);
    expect(count('ok')).toBeGreaterThanOrEqual(1);
    expect(sampleValue(f, `${P}forward_errors_total`, { sink: 'fail-once' })).toBe(1);
  });
});

describe('CollectorMetrics', () => {
  it('answers a scrape when a gauge source fails: no samples for it (NaN when unlabelled)', async () => {
    const m = new CollectorMetrics();
    m.gauge('broken', 'A gauge whose source throws.', [], () => {
      throw new Error('db closing');
    });
    m.gauge('broken_labelled', 'A labelled gauge whose source rejects.', ['state'], async () => {
      throw new Error('db closing');
    });
    m.gauge('fine', 'A gauge that works.', ['state'], () => [[{ state: 'on' }, 3]]);
    const f = parseExposition(await m.render());
    expect(sampleValue(f, `${P}broken`)).toBeNaN();
    expect(f.get(`${P}broken_labelled`)?.samples).toHaveLength(0);
    expect(sampleValue(f, `${P}fine`, { state: 'on' })).toBe(3);
  });

  it('get() reads counters; a call with other label names is dropped, not thrown', async () => {
    const m = new CollectorMetrics();
    m.inc('things_total', 'Things.', { kind: 'a' }, 2);
    m.inc('things_total', 'Things.', { other: 'x' });
    expect(await m.get('things_total', { kind: 'a' })).toBe(2);
    expect(await m.get('things_total', { other: 'x' })).toBe(0);
    expect(await m.get('never_total')).toBe(0);
    parseExposition(await m.render());
  });
});

describe('the strict exposition parser of these tests', () => {
  const head = '# HELP x_total X.\n# TYPE x_total counter\n';
  it.each([
    ['a sample before its TYPE', 'x_total 1\n'],
    ['a value that is not a number', `${head}x_total one\n`],
    ['a series twice', `${head}x_total{a="1"} 1\nx_total{a="1"} 2\n`],
    ['a bad label', `${head}x_total{a=1} 1\n`],
    ['no final newline', `${head}x_total 1`],
    [
      'buckets that are not cumulative',
      '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    ],
  ])('rejects %s', (_what, text) => {
    expect(() => parseExposition(text)).toThrow();
  });
});
