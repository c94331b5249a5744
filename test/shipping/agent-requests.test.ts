/**
 * The request listing against the code that makes the requests: the enroll body the client builds
 * has exactly the listed fields, and what the listing says the collector keeps per device is
 * exactly the collector's `devices` table. (The wire itself: test/e2e/wire-transparency.test.ts.)
 */
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { COLLECTOR_MIGRATIONS } from '../../src/collector/collector-store.js';
import { isPersonal } from '../../src/events/content-class.js';
import {
  agentRequests,
  COLLECTOR_DEVICE_RECORD,
  ENROLL_FIELDS,
  enrollBody,
} from '../../src/shipping/agent-requests.js';
import { openDatabase } from '../../src/store/database.js';
import { leafPaths } from '../helpers/recording-proxy.js';
import { tempDir } from '../helpers/tmp.js';

describe('agent request listing', () => {
  test('the enroll body has exactly the listed fields', () => {
    const body = enrollBody({
      secret: 's',
      deviceId: 'd',
      hostname: 'h',
      os: 'linux 6',
      agentVersion: '0.1.0',
    });
    expect(leafPaths(body).map(([p]) => p)).toEqual(ENROLL_FIELDS.map((f) => f.path));
    expect(ENROLL_FIELDS.find((f) => f.path === 'device.hostname')?.personal).toBe(true);
  });

  test('every field and header carries personal as its class says; the token header identifies the machine', () => {
    for (const r of agentRequests(null)) {
      for (const f of r.fields) expect(f.personal, f.path).toBe(isPersonal(f.contentClass));
      for (const h of r.headers) expect(h.personal, h.name).toBe(isPersonal(h.contentClass));
    }
    const events = agentRequests(null).find((r) => r.kind === 'events');
    expect(events?.headers.find((h) => h.name === 'authorization')?.identifies).toBe(true);
    expect(agentRequests(null).map((r) => `${r.method} ${r.path}`)).toEqual([
      'POST /v1/enroll',
      'POST /v1/events',
      'GET /v1/policy',
      'GET /v1/policy/shadow',
    ]);
  });

  test("what the collector keeps per device is the collector's devices table, column by column", () => {
    const { db } = openDatabase(join(tempDir('tgtr-req-'), 'c.db'), { migrations: COLLECTOR_MIGRATIONS });
    const columns = (db.pragma('table_info(devices)') as { name: string }[]).map((c) => c.name);
    db.close();
    expect(COLLECTOR_DEVICE_RECORD.map((k) => k.column).sort()).toEqual([...columns].sort());
  });
});
