/**
 * /metrics needs no token, so what one scrape costs is what anyone who reaches the port can make
 * the collector spend (reviewers): the devices table is scanned once per scrape, not once per
 * coverage gauge (four of them: at 50,000 devices on SQLite that was ~0.6 s of blocked event loop
 * a scrape, ~0.06-0.15 s now), and a scan is reused for METRICS_SCAN_REUSE_MS, so scraping back to
 * back gets no more scans out of the store (4 scrape loops had taken an honest batch from 1.5 ms
 * to 250 ms at 50,000 devices). Real collector on loopback; the store's own methods run, only counted.
 */
import { request } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { METRICS_SCAN_REUSE_MS } from '../../src/collector/collector-server.js';
import { enrollDevice, startTestCollector, type TestCollector } from '../helpers/collector.js';
import { waitFor } from '../helpers/wait.js';

let c: TestCollector | undefined;
afterAll(async () => {
  await c?.close();
});

describe('/metrics cost', () => {
  it('one scrape scans the devices coverage once; scrapes back to back reuse that scan until it is METRICS_SCAN_REUSE_MS old', async () => {
    c = await startTestCollector();
    const store = c.collector.store;
    const realCoverage = store.coverageCounts.bind(store);
    const realCounts = store.deviceCounts.bind(store);
    let scans = 0;
    let counts = 0;
    store.coverageCounts = () => {
      scans++;
      return realCoverage();
    };
    store.deviceCounts = (before) => {
      counts++;
      return realCounts(before);
    };
    const start = performance.now();
    // at most one scan per started period since the first scrape, however fast the scrapes come
    const bound = (): number => 1 + Math.floor((performance.now() - start) / METRICS_SCAN_REUSE_MS);
    const res = await fetch(`${c.url}/metrics`);
    const text = await res.text();
    expect(res.status).toBe(200);
    // the four coverage families are all there, from the one scan
    for (const f of [
      'devices_coverage',
      'devices_process_source',
      'devices_exec_event_drops',
      'devices_exec_deny_deadline_misses',
    ])
      expect(text).toContain(`# TYPE toolguard_collector_${f} gauge`);
    expect([scans, counts]).toEqual([1, 1]);
    // an unauthenticated client scraping as fast as it can
    for (let i = 0; i < 50; i++) await (await fetch(`${c.url}/metrics`)).text();
    expect(scans).toBeLessThanOrEqual(bound());
    expect(counts).toBeLessThanOrEqual(bound());
    // a device enrolled meanwhile shows once the scan is that old
    await enrollDevice(c.url, c.enrollSecret, 'dev-metrics-cost');
    const fresh = await waitFor(
      async () => {
        const text = await (await fetch(`${c?.url}/metrics`)).text();
        return text.includes('toolguard_collector_devices{state="active"} 1') && text;
      },
      'the devices gauge to count the new device',
      { timeoutMs: 4 * METRICS_SCAN_REUSE_MS, intervalMs: 100 },
    );
    expect(fresh).toContain('toolguard_collector_devices{state="active"} 1');
    expect(scans).toBeGreaterThanOrEqual(2);
    expect(scans).toBeLessThanOrEqual(bound());
    expect(counts).toBeLessThanOrEqual(bound());
  });

  it('an unknown HTTP method adds no series: it counts as other', async () => {
    c ??= await startTestCollector();
    const u = new URL(c.url);
    const methods = ['PROPFIND', 'MKCOL', 'LOCK', 'SEARCH', 'PURGE', 'REPORT'];
    for (const method of methods)
      await new Promise<void>((done) => {
        const r = request({ host: u.hostname, port: u.port, method, path: '/nowhere' }, (res) => {
          res.resume();
          res.on('end', done);
        });
        r.on('error', () => done());
        r.end();
      });
    const text = await (await fetch(`${c.url}/metrics`)).text();
    const counts = text
      .split('\n')
      .filter((l) => l.startsWith('toolguard_collector_request_duration_seconds_count{route="unmatched"'));
    for (const m of methods) expect(text).not.toContain(`method="${m}"`);
    expect(counts).toEqual([
      'toolguard_collector_request_duration_seconds_count{route="unmatched",method="other"} 6',
    ]);
  });
});
