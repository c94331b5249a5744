/**
 * The console timeline on SQLite looks through a bounded window of events per page
 * (CONSOLE_SCAN_WINDOW; sqlite-store.ts): a filter no index narrows must not walk the whole log on
 * the collector's main thread. A page that reached the bound ends short with a cursor below it, and
 * walking the pages still finds every match once, newest first.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseBatch } from '../../src/collector/ingest.js';
import { SqliteCollectorStore } from '../../src/collector/store/sqlite-store.js';
import { blockedEvent, collectorTempDir, heartbeatEvent, ndjson } from '../helpers/collector.js';

describe('console timeline scan bound (SQLite)', () => {
  it('pages through a window at a time: short pages carry on, every match once, nothing scanned past the window', async () => {
    const s = new SqliteCollectorStore(
      { file: join(collectorTempDir('tg-scan-'), 'c.db') },
      { consoleScanWindow: 100 },
    );
    try {
      await s.enrollDevice(
        { id: 'dev', hostname: 'dev.test', os: 'linux', agent_version: '0.1.0' },
        'h',
        new Date().toISOString(),
      );
      // 5 blocks first (the oldest rids), then 350 heartbeats: the blocks lie 3+ windows down
      const events = [
        ...Array.from({ length: 5 }, (_, i) => blockedEvent('dev', i + 1)),
        ...Array.from({ length: 350 }, (_, i) => heartbeatEvent('dev', i + 10)),
      ];
      const b = parseBatch(Buffer.from(ndjson(events)), 'dev');
      expect(b.rejectedTotal).toBe(0);
      await s.insertGroup([
        { deviceId: 'dev', enrollment: 1, events: b.valid, receivedAt: new Date().toISOString() },
      ]);

      const first = await s.consoleEvents({ filter: { types: ['process.blocked'] }, limit: 10 });
      // the newest 100 rids are heartbeats: nothing found, but the walk goes on below them
      expect(first.items).toEqual([]);
      expect(first.next).not.toBeNull();

      const found: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const p = await s.consoleEvents({
          filter: { types: ['process.blocked'] },
          limit: 10,
          ...(cursor ? { cursor } : {}),
        });
        found.push(...p.items.map((e) => e.id));
        cursor = p.next;
      } while (cursor !== null && ++pages < 20);
      expect(cursor).toBeNull();
      const blocks = events.slice(0, 5).map((e) => e.id as string);
      expect(found).toEqual([...blocks].reverse());

      // an unfiltered page fills from the window as before
      const all = await s.consoleEvents({ filter: {}, limit: 50 });
      expect(all.items).toHaveLength(50);
    } finally {
      await s.close();
    }
  });
});
