/**
 * The agent's record of what it sent (real SQLite file, injected clock only): totals per request
 * kind and per event type over the last 24 whole hours, older hours left out and pruned.
 */
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { openDatabase } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { SentLog } from '../../src/store/sent-log.js';
import { tempDir } from '../helpers/tmp.js';

const HOUR = 3600_000;

describe('SentLog', () => {
  test('sums requests and events per kind and type over the last 24 h', () => {
    const { db } = openDatabase(join(tempDir('tgtr-sent-'), 's.db'), { migrations: MIGRATIONS });
    let now = Date.UTC(2030, 0, 10, 12, 30);
    const log = new SentLog(db, () => now);
    log.record('events', 500, [
      { type: 'process.blocked', bytes: 900 },
      { type: 'agent.heartbeat', bytes: 400 },
      { type: 'agent.heartbeat', bytes: 410 },
    ]);
    now += HOUR;
    log.record('events', 300, [{ type: 'agent.heartbeat', bytes: 400 }]);
    log.record('enroll', 120);
    log.record('policy', 0);
    expect(log.summary()).toEqual({
      since: new Date(Date.UTC(2030, 0, 9, 13)).toISOString(),
      requests: {
        enroll: { count: 1, bytes: 120 },
        events: { count: 2, bytes: 800 },
        policy: { count: 1, bytes: 0 },
      },
      events: {
        'agent.heartbeat': { count: 3, bytes: 1210 },
        'process.blocked': { count: 1, bytes: 900 },
      },
    });
    // a day later the first hour has left the window
    now += 24 * HOUR;
    expect(log.summary().requests).toEqual({
      enroll: { count: 1, bytes: 120 },
      events: { count: 1, bytes: 300 },
      policy: { count: 1, bytes: 0 },
    });
    // three days later, after enough records to prune, old hours are gone from the table
    now += 72 * HOUR;
    for (let i = 0; i < 50; i++) log.record('policy', 0);
    const hours = db.prepare('SELECT DISTINCT hour FROM sent_log').all() as { hour: string }[];
    expect(hours).toEqual([{ hour: new Date(Math.floor(now / HOUR) * HOUR).toISOString() }]);
    db.close();
  });
});
