/**
 * /metrics needs no token, so what one scrape costs is what anyone who reaches the port can make
 * the collector spend (reviewer): the devices table is scanned once per scrape, not once per
 * coverage gauge (four of them: at 50,000 devices on SQLite that was ~0.6 s of blocked event loop
 * a scrape, ~0.15 s now). Real collector on loopback; the store's own method runs, only counted.
 */
import { request } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let c: TestCollector | undefined;
afterAll(async () => {
  await c?.close();
});

describe('/metrics cost', () => {
  it('one scrape scans the devices coverage once', async () => {
    c = await startTestCollector();
    const store = c.collector.store;
    const real = store.coverageCounts.bind(store);
    let scans = 0;
    store.coverageCounts = () => {
      scans++;
      return real();
    };
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
    expect(scans).toBe(1);
    await (await fetch(`${c.url}/metrics`)).text();
    expect(scans).toBe(2);
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
