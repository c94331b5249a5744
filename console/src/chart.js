/**
 * One rule's activity over time: a uPlot line chart (canvas; small and fast), one series per
 * event type, with the same numbers as a table for screen readers and keyboard users.
 */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { html } from './html.js';

/** Colours of the series, each with ≥ 3:1 contrast on white (WCAG non-text contrast). */
const COLOURS = {
  'process.blocked': '#b42318',
  'process.denied': '#7a2e0e',
  'package.quarantined': '#6941c6',
  'path.quarantined': '#175cd3',
  'process.warned': '#b54708',
  'package.warned': '#93370d',
  'path.warned': '#854a0e',
  'process.audited': '#475467',
  'package.audited': '#344054',
  'path.audited': '#1d2939',
};

/** Buckets (rule_id, type, bucket_start, count) → x (unix s) and one y array per type. */
export function toSeries(buckets, since, until, step) {
  const start = Math.floor(Date.parse(since) / 1000 / step) * step;
  const end = Date.parse(until) / 1000;
  const xs = [];
  for (let t = start; t < end && xs.length < 2000; t += step) xs.push(t);
  const types = [...new Set(buckets.map((b) => b.type))].sort();
  const index = new Map(xs.map((x, i) => [x, i]));
  const ys = types.map(() => xs.map(() => 0));
  for (const b of buckets) {
    const i = index.get(Math.floor(Date.parse(b.bucket_start) / 1000));
    if (i !== undefined) ys[types.indexOf(b.type)][i] += b.count;
  }
  return { xs, types, ys };
}

export function RuleChart({ rule, since, until, step }) {
  const ref = useRef(null);
  const { xs, types, ys } = toSeries(rule.buckets, since, until, step);
  const total = ys.reduce((n, y) => n + y.reduce((a, b) => a + b, 0), 0);
  useEffect(() => {
    if (!ref.current || types.length === 0) return undefined;
    const width = Math.max(280, Math.min(ref.current.clientWidth || 640, 900));
    const plot = new uPlot(
      {
        width,
        height: 180,
        series: [{}, ...types.map((t) => ({ label: t, stroke: COLOURS[t] ?? '#101828', width: 2 }))],
        axes: [{ stroke: '#344054' }, { stroke: '#344054' }],
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
      },
      [xs, ...ys],
      ref.current,
    );
    return () => plot.destroy();
  }, [rule, since, until, step]);
  if (types.length === 0) return html`<p class="muted">No events of this rule in the window.</p>`;
  return html`<figure class="chart">
    <div ref=${ref} role="img" aria-label=${`${rule.name}: ${total} events (${types.join(', ')}) in the window`}></div>
    <figcaption class="visually-hidden">Events of rule ${rule.id} per ${step === 3600 ? 'hour' : 'day'}</figcaption>
  </figure>`;
}
