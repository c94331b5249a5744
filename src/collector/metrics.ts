/**
 * Owns the collector's Prometheus metrics, on prom-client: one `Registry` per collector instance
 * (several collectors run in one test process, so prom-client's global default registry is never
 * used), counters created on first use, latency histograms, gauges computed at scrape time, and
 * the process metrics (`collectDefaultMetrics`: CPU, memory, GC, event-loop lag, handles, fds).
 * Served as the Prometheus text exposition format 0.0.4.
 *
 * Label values come from a fixed vocabulary (route templates, status codes, reason codes, sink
 * names, the schema's event types, the published policy's rule ids) — never from request data as
 * such — so the number of series stays bounded under hostile input.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { EVENT_TYPES } from '../events/event-types.js';

/** Histogram buckets in seconds: ingest of a 500-event batch is ~5-50 ms; the tail shows up to 10 s. */
const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/**
 * Forwarder delivery buckets in seconds: a local NDJSON append is sub-millisecond, a Splunk HEC
 * round trip (with ack polling) tens of ms to seconds, and a sink's timeout defaults to 30 s.
 */
const DELIVERY_BUCKETS_S = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** The label value of an event type outside the schema's list, or a rule id the published policy lacks. */
export const OTHER_LABEL = 'other';
/** HTTP methods named in the request-latency histogram; others count as OTHER_LABEL. */
const HTTP_METHODS: ReadonlySet<string> = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'OPTIONS',
  'PATCH',
]);

type Labels = Readonly<Record<string, string>>;
type GaugeRows = readonly (readonly [Labels, number])[];

const KNOWN_TYPES: ReadonlySet<string> = new Set(EVENT_TYPES);

/**
 * Process metrics are one set per process, not per collector: they live in one registry per
 * prefix, created on first use and merged into every collector's scrape. A registry per collector
 * would start one GC observer and one event-loop monitor per instance that prom-client can never
 * stop (it exposes no way to), i.e. a leak in a process that starts and closes many collectors.
 */
const processRegistries = new Map<string, Registry>();

function processRegistry(prefix: string): Registry {
  let r = processRegistries.get(prefix);
  if (!r) {
    r = new Registry();
    collectDefaultMetrics({ register: r, prefix });
    processRegistries.set(prefix, r);
  }
  return r;
}

/** The collector's metrics. Recording methods are O(labels) and never throw. */
export class CollectorMetrics {
  /** This collector's own metrics (the process metrics are merged in at scrape time). */
  readonly registry = new Registry();
  private readonly counters = new Map<string, Counter>();
  private readonly requestDuration: Histogram;
  private readonly ingestDuration: Histogram;
  private readonly deliveryDuration: Histogram;
  private readonly byType: Counter;
  private readonly byRule: Counter;

  constructor(private readonly prefix = 'toolguard_collector_') {
    this.requestDuration = new Histogram({
      name: `${prefix}request_duration_seconds`,
      help: 'HTTP request latency by route template.',
      labelNames: ['route', 'method'],
      buckets: LATENCY_BUCKETS_S,
      registers: [this.registry],
    });
    this.ingestDuration = new Histogram({
      name: `${prefix}ingest_duration_seconds`,
      help: 'Time from a fully received events body to its events stored (queue wait, parse, validation, commit), for stored batches.',
      buckets: LATENCY_BUCKETS_S,
      registers: [this.registry],
    });
    this.deliveryDuration = new Histogram({
      name: `${prefix}forward_delivery_duration_seconds`,
      help: 'Time one delivery of a batch to a forwarder sink took, by sink and outcome (ok, error).',
      labelNames: ['sink', 'outcome'],
      buckets: DELIVERY_BUCKETS_S,
      registers: [this.registry],
    });
    this.byType = this.counter(
      'events_ingested_total',
      'Valid events received, by event type (an event resent after a lost answer counts again; events_accepted_total counts stored ones once).',
      ['type'],
    );
    // every type visible from the start, so rate() works before the first event of a type
    for (const type of EVENT_TYPES) this.byType.inc({ type }, 0);
    this.byRule = this.counter(
      'events_by_rule_total',
      `Valid events naming a rule, by rule id; ids the published policy does not have count as "${OTHER_LABEL}".`,
      ['rule'],
    );
  }

  private counter(name: string, help: string, labelNames: readonly string[]): Counter {
    const c = new Counter({ name: `${this.prefix}${name}`, help, labelNames, registers: [this.registry] });
    this.counters.set(name, c);
    return c;
  }

  /**
   * Adds `by` (default 1) to counter `name{labels}`. The family is created on the first call, with
   * that call's `help` and label names; a later call with other label names is a programming error
   * and is dropped (recording never takes a request down).
   */
  inc(name: string, help: string, labels: Labels = {}, by = 1): void {
    try {
      const c = this.counters.get(name) ?? this.counter(name, help, Object.keys(labels));
      c.inc(labels, by);
    } catch {
      // dropped: see above
    }
  }

  /**
   * Counts events forwarder `sink` set aside for good (dead-lettered: refused by the destination for
   * their content, or too large even alone). `count` 0 makes the series visible before the first one.
   */
  deadLettered(sink: string, count: number): void {
    this.inc(
      'forward_dead_letter_total',
      'Events a forwarder set aside for good (refused for their content, or too large alone); their ids are logged.',
      { sink },
      count,
    );
  }

  /** The current value of counter `name{labels}` (0 when never incremented). */
  async get(name: string, labels: Labels = {}): Promise<number> {
    const c = this.counters.get(name);
    if (!c) return 0;
    const want = Object.entries(labels);
    const { values } = await c.get();
    const row = values.find(
      (v) =>
        Object.keys(v.labels).length === want.length && want.every(([k, value]) => v.labels[k] === value),
    );
    return row?.value ?? 0;
  }

  /** Records one request's duration for the latency histogram. */
  observeRequest(route: string, method: string, seconds: number): void {
    // the method is the client's word (Node's parser takes ~40: PROPFIND, MKCOL, …): the ones a
    // route answers keep their name, any other counts as `other`, so no client adds histogram series
    const m = HTTP_METHODS.has(method) ? method : OTHER_LABEL;
    this.requestDuration.observe({ route, method: m }, seconds);
  }

  /** Records how long a stored events body took from received to committed. */
  observeIngest(seconds: number): void {
    this.ingestDuration.observe(seconds);
  }

  /** Records one delivery attempt of forwarder `sink`. */
  observeDelivery(sink: string, outcome: 'ok' | 'error', seconds: number): void {
    this.deliveryDuration.observe({ sink, outcome }, seconds);
  }

  /**
   * Counts valid events by type and by rule. `ruleIds` are the rule ids of the published policy:
   * any other id (an agent on an older or forged policy, or a hostile one) counts as `other`, and
   * a type outside the schema's list likewise, so an agent cannot create series.
   */
  ingested(
    events: readonly { readonly type: string; readonly ruleId: string | null }[],
    ruleIds: ReadonlySet<string>,
  ): void {
    const types = new Map<string, number>();
    const rules = new Map<string, number>();
    for (const e of events) {
      const t = KNOWN_TYPES.has(e.type) ? e.type : OTHER_LABEL;
      types.set(t, (types.get(t) ?? 0) + 1);
      if (e.ruleId === null) continue;
      const r = ruleIds.has(e.ruleId) ? e.ruleId : OTHER_LABEL;
      rules.set(r, (rules.get(r) ?? 0) + 1);
    }
    for (const [type, n] of types) this.byType.inc({ type }, n);
    for (const [rule, n] of rules) this.byRule.inc({ rule }, n);
  }

  /**
   * Registers a gauge family computed at scrape time with the given label names. `collect`
   * returns [labels, value] pairs. When it throws (e.g. the DB is closing) /metrics still answers:
   * a labelled family then has no samples in that scrape and an unlabelled one reads NaN.
   */
  gauge(
    name: string,
    help: string,
    labelNames: readonly string[],
    collect: () => GaugeRows | Promise<GaugeRows>,
  ): void {
    new Gauge({
      name: `${this.prefix}${name}`,
      help,
      labelNames,
      registers: [this.registry],
      async collect() {
        let rows: GaugeRows | null = null;
        try {
          rows = await collect();
        } catch {
          rows = null;
        }
        this.reset();
        if (rows === null) {
          if (labelNames.length === 0) this.set(Number.NaN);
          return;
        }
        for (const [labels, v] of rows) this.set(labels, v);
      },
    });
  }

  /** The Prometheus text exposition of this collector's metrics and the process metrics. */
  async render(): Promise<string> {
    return await Registry.merge([this.registry, processRegistry(this.prefix)]).metrics();
  }

  /** The content type of `render()`'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
