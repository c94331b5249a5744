/**
 * Owns the collector's Prometheus metrics: counters with labels, one request-latency histogram,
 * and gauges computed at scrape time. Rendered as the Prometheus text exposition format 0.0.4.
 * Label values come from a fixed vocabulary (route templates, status codes, reason codes, sink
 * names) — never from request data — so the number of series stays bounded under hostile input.
 */

/** Histogram buckets in seconds: ingest of a 500-event batch is ~5-50 ms; the tail shows up to 10 s. */
const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

type Labels = Readonly<Record<string, string>>;

function key(labels: Labels): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
    .join(',');
}

interface Family {
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly values: Map<string, number>;
}

interface HistogramSeries {
  readonly counts: number[];
  sum: number;
  count: number;
}

/** A small metrics registry. All methods are O(labels) and never throw. */
export class CollectorMetrics {
  private readonly families = new Map<string, Family>();
  private readonly histogram = new Map<string, HistogramSeries>();
  private readonly gauges: (() => Promise<string>)[] = [];

  constructor(private readonly prefix = 'toolguard_collector_') {}

  /** Adds `by` (default 1) to counter `name{labels}`; the family is created on first use. */
  inc(name: string, help: string, labels: Labels = {}, by = 1): void {
    let f = this.families.get(name);
    if (!f) {
      f = { help, type: 'counter', values: new Map() };
      this.families.set(name, f);
    }
    const k = key(labels);
    f.values.set(k, (f.values.get(k) ?? 0) + by);
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
  get(name: string, labels: Labels = {}): number {
    return this.families.get(name)?.values.get(key(labels)) ?? 0;
  }

  /** Records one request's duration for the latency histogram. */
  observeRequest(route: string, method: string, seconds: number): void {
    const k = key({ route, method });
    let s = this.histogram.get(k);
    if (!s) {
      s = { counts: LATENCY_BUCKETS_S.map(() => 0), sum: 0, count: 0 };
      this.histogram.set(k, s);
    }
    for (let i = 0; i < LATENCY_BUCKETS_S.length; i++)
      if (seconds <= (LATENCY_BUCKETS_S[i] as number)) s.counts[i]! += 1;
    s.sum += seconds;
    s.count += 1;
  }

  /**
   * Registers a gauge family computed at scrape time. `collect` returns [labels, value] pairs;
   * a throwing collector is skipped so /metrics always answers.
   */
  gauge(
    name: string,
    help: string,
    collect: () => readonly (readonly [Labels, number])[] | Promise<readonly (readonly [Labels, number])[]>,
  ): void {
    this.gauges.push(async () => {
      const rows = await collect();
      const lines = [`# HELP ${this.prefix}${name} ${help}`, `# TYPE ${this.prefix}${name} gauge`];
      for (const [labels, v] of rows) lines.push(`${this.prefix}${name}${braces(key(labels))} ${v}`);
      return lines.join('\n');
    });
  }

  /** The Prometheus text exposition of every metric. */
  async render(): Promise<string> {
    const out: string[] = [];
    for (const [name, f] of this.families) {
      out.push(`# HELP ${this.prefix}${name} ${f.help}`, `# TYPE ${this.prefix}${name} ${f.type}`);
      for (const [k, v] of f.values) out.push(`${this.prefix}${name}${braces(k)} ${v}`);
    }
    const h = `${this.prefix}request_duration_seconds`;
    out.push(`# HELP ${h} HTTP request latency by route template.`, `# TYPE ${h} histogram`);
    for (const [k, s] of this.histogram) {
      for (const [i, le] of LATENCY_BUCKETS_S.entries())
        out.push(`${h}_bucket{${k},le="${le}"} ${s.counts[i]}`);
      out.push(
        `${h}_bucket{${k},le="+Inf"} ${s.count}`,
        `${h}_sum{${k}} ${s.sum}`,
        `${h}_count{${k}} ${s.count}`,
      );
    }
    // a gauge whose source failed (e.g. DB closing) is left out of this scrape
    const gauges = await Promise.all(this.gauges.map((g) => g().catch(() => null)));
    for (const g of gauges) if (g !== null) out.push(g);
    return `${out.join('\n')}\n`;
  }
}

function braces(k: string): string {
  return k === '' ? '' : `{${k}}`;
}
