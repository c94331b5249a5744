/**
 * The agent's real CollectorClient (src/shipping) against the real collector over HTTPS with a
 * pinned self-signed CA: enroll, gzip NDJSON batches, duplicates on replay, a poison event named
 * in the 400 while the rest of the batch is stored, and re-enroll after token rotation.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import type { AgentEvent } from '../../src/events/event-types.js';
import { CollectorClient } from '../../src/shipping/collector-client.js';
import { openDatabase, StateStore } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import {
  blockedEvent,
  heartbeatEvent,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tg-compat-');
let c: TestCollector;
let client: CollectorClient;
const caFile = join(dir, 'cert.pem');

beforeAll(async () => {
  const keyFile = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      caFile,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  c = await startTestCollector({ tls: { cert: readFileSync(caFile), key: readFileSync(keyFile) } });
  const { db } = openDatabase(join(dir, 'agent.db'), { migrations: MIGRATIONS });
  client = new CollectorClient({
    url: c.url,
    caFile,
    timeoutMs: 10_000,
    state: new StateStore(db),
    deviceId: 'dev-compat',
    hostname: 'dev-compat.test',
    enrollSecret: c.enrollSecret,
    logger: silentLogger(),
  });
});
afterAll(async () => {
  await c.close();
});

describe('agent CollectorClient ↔ guard-collector', () => {
  it('enrolls over HTTPS with the pinned CA and ships gzip batches idempotently', async () => {
    expect(await client.enroll()).toEqual({ kind: 'enrolled' });
    const events = [
      heartbeatEvent('dev-compat', 1),
      blockedEvent('dev-compat', 2),
    ] as unknown as AgentEvent[];
    expect(await client.postEvents(events)).toMatchObject({
      kind: 'ok',
      status: 200,
      accepted: 2,
      duplicates: 0,
    });
    expect(await client.postEvents(events)).toMatchObject({
      kind: 'ok',
      status: 200,
      accepted: 0,
      duplicates: 2,
    });
  });

  it('gets the poison event named in a 400 while the rest of the batch is stored', async () => {
    const good = heartbeatEvent('dev-compat', 3);
    const poison: Record<string, unknown> = { ...heartbeatEvent('dev-compat', 4), policy_state: 'confused' };
    const r = await client.postEvents([good, poison] as unknown as AgentEvent[]);
    expect(r).toMatchObject({ kind: 'ok', status: 400, accepted: 1, duplicates: 0 });
    if (r.kind !== 'ok') throw new Error('unreachable');
    expect(r.rejected.map((x) => x.id)).toEqual([poison.id]);
  });

  it('is told to re-enroll (unauthorized) once its token was rotated away, and recovers', async () => {
    // a second agent install with the same device id re-enrolls: the first one's token is rotated away
    const { db } = openDatabase(join(dir, 'agent2.db'), { migrations: MIGRATIONS });
    const other = new CollectorClient({
      url: c.url,
      caFile,
      timeoutMs: 10_000,
      state: new StateStore(db),
      deviceId: 'dev-compat',
      hostname: 'dev-compat.test',
      enrollSecret: c.enrollSecret,
      logger: silentLogger(),
    });
    expect(await other.enroll()).toEqual({ kind: 'enrolled' });
    const ev = [heartbeatEvent('dev-compat', 5)] as unknown as AgentEvent[];
    expect(await client.postEvents(ev)).toMatchObject({ kind: 'unauthorized', status: 401 });
    expect(await client.enroll()).toEqual({ kind: 'enrolled' });
    expect(await client.postEvents(ev)).toMatchObject({ kind: 'ok', accepted: 1 });
  });
});
