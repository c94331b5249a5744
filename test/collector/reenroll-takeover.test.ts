/**
 * Idempotency per (device, enrollment, event id): whoever holds the enroll secret (every enrolled
 * machine's root does) can re-enroll an existing device id and post that device's (public) event
 * ids first. Those copies belong to the forger's enrollment; the real agent — told 401, it
 * re-enrolls — then stores its real events under its own, newer enrollment: all stored, listed
 * and forwarded, nothing acknowledged-but-dropped. Driven by the agent's real outbox, collector
 * client and shipper against the real collector over loopback. Also: a token of an older
 * enrollment is refused (401), the admin API shows the enrollment generation, and the documented
 * price — an unacknowledged batch re-sent after a re-enrollment is stored twice.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CollectorStore, type IncomingEvent } from '../../src/collector/collector-store.js';
import { silentLogger } from '../../src/common/logger.js';
import { CollectorClient, STATE_DEVICE_TOKEN } from '../../src/shipping/collector-client.js';
import { Shipper } from '../../src/shipping/shipper.js';
import { openDatabase, StateStore } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { OutboxStore } from '../../src/store/outbox-store.js';
import {
  collectorTempDir,
  enrollDevice,
  heartbeatEvent,
  postEvents,
  RecordingSink,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';
import { waitFor } from '../helpers/wait.js';

async function admin(c: TestCollector, path: string): Promise<Record<string, unknown>> {
  const r = await fetch(`${c.url}${path}`, { headers: { authorization: `Bearer ${c.adminToken}` } });
  expect(r.status).toBe(200);
  return (await r.json()) as Record<string, unknown>;
}

async function eventsOf(c: TestCollector, device: string): Promise<Record<string, unknown>[]> {
  return (await admin(c, `/v1/events?device_id=${device}&limit=1000`)).events as Record<string, unknown>[];
}

async function enrollmentOf(c: TestCollector, device: string): Promise<unknown> {
  const { devices } = (await admin(c, '/v1/devices?limit=1000')) as { devices: Record<string, unknown>[] };
  return devices.find((d) => d.id === device)?.enrollment;
}

/** The agent's real shipping stack (outbox, collector client, shipper) for `deviceId`. */
function agent(c: TestCollector, deviceId: string) {
  const dir = collectorTempDir('tg-col-agent-');
  const logger = silentLogger();
  const { db } = openDatabase(join(dir, 'agent.db'), { migrations: MIGRATIONS });
  const state = new StateStore(db);
  const outbox = new OutboxStore({
    db,
    deviceId,
    hostname: `${deviceId}.test`,
    maxBytes: 64 * 1024 * 1024,
    logger,
  });
  const client = new CollectorClient({
    url: c.url,
    timeoutMs: 10_000,
    state,
    deviceId,
    hostname: `${deviceId}.test`,
    os: 'linux test',
    enrollSecret: c.enrollSecret,
    logger,
  });
  const shipper = new Shipper({
    outbox,
    client,
    batchMaxEvents: 100,
    batchMaxBytes: 1024 * 1024,
    intervalMs: 3_600_000,
    backoffMaxS: 1,
    logger,
  });
  const emit = (k: number, reason: string): Record<string, unknown>[] =>
    Array.from({ length: k }, (_, i) => {
      const e = outbox.emit('agent.stopped', { reason: `${reason}-${i}` });
      if (!e) throw new Error('outbox refused an event');
      return e as unknown as Record<string, unknown>;
    });
  const close = async (): Promise<void> => {
    await shipper.stop();
    client.close();
    db.close();
  };
  return { outbox, client, shipper, state, emit, close };
}

describe('re-enrolling a device id with the enroll secret', () => {
  it("cannot suppress the device's events: its real events are stored, listed and forwarded after it re-enrolls", async () => {
    const dir = collectorTempDir();
    const rawFile = join(dir, 'raw.ndjson');
    const rec = new RecordingSink();
    const c = await startTestCollector({ forwarders: { ndjson: { file: rawFile }, extra: [rec] } });
    const victim = agent(c, 'dev-takeover-v');
    try {
      // the victim enrolls (enrollment 1) and ships its first event
      const first = victim.emit(1, 'first');
      await victim.shipper.flushNow();
      expect(victim.outbox.depth()).toBe(0);
      expect(await enrollmentOf(c, 'dev-takeover-v')).toBe(1);
      const victimToken1 = victim.state.get<string>(STATE_DEVICE_TOKEN) as string;

      // five real events wait in the victim's outbox; their ids are public on its socket
      const real = victim.emit(5, 'real');
      // the attacker (root on another enrolled machine) re-enrolls the victim's id: enrollment 2
      const attackerToken = await enrollDevice(c.url, c.enrollSecret, 'dev-takeover-v');
      expect(await enrollmentOf(c, 'dev-takeover-v')).toBe(2);
      const forged = real.map((e) => ({ ...e, reason: 'forged' }));
      const ra = await postEvents(c.url, attackerToken, forged);
      expect(ra.status).toBe(200);
      expect(await ra.json()).toEqual({ accepted: 5, duplicates: 0 });

      // the victim's next send: 401 → the real client re-enrolls (enrollment 3) → sends again
      await victim.shipper.flushNow();
      expect(victim.outbox.depth()).toBe(0);
      expect(victim.shipper.status().last_error).toBeNull();
      expect(await enrollmentOf(c, 'dev-takeover-v')).toBe(3);
      // the two re-enrollments of the id are counted
      const metrics = await (await fetch(`${c.url}/metrics`)).text();
      expect(metrics).toMatch(/^toolguard_collector_reenroll_total 2$/m);

      // tokens of older enrollments are refused
      for (const old of [victimToken1, attackerToken]) {
        const r = await postEvents(c.url, old, [heartbeatEvent('dev-takeover-v', 99)]);
        expect(r.status).toBe(401);
        expect(((await r.json()) as { error: { code: string } }).error.code).toBe(
          'GUARD_COLLECTOR_UNAUTHORIZED',
        );
      }

      // the admin API lists every copy with the enrollment it was posted under; the real bodies
      // are there exactly as the agent sent them
      const listed = await eventsOf(c, 'dev-takeover-v');
      expect(listed).toHaveLength(11);
      const strip = ({ received_at: _r, enrollment: _e, ...e }: Record<string, unknown>) => e;
      expect(listed.filter((e) => e.enrollment === 1).map(strip)).toEqual(first);
      expect(listed.filter((e) => e.enrollment === 2).map(strip)).toEqual(forged);
      expect(listed.filter((e) => e.enrollment === 3).map(strip)).toEqual(real);

      // forwarded: the recording sink and the raw NDJSON file each hold all 11 rows once, the
      // real events among them with the victim's bodies
      await waitFor(() => rec.rows.length >= 11, 'the recording sink to receive 11 events');
      expect(rec.rows).toHaveLength(11);
      expect(rec.rows.filter((r) => r.enrollment === 3).map((r) => JSON.parse(r.body))).toEqual(real);
      const rawLines = await waitFor(() => {
        let text = '';
        try {
          text = readFileSync(rawFile, 'utf8');
        } catch {
          return undefined;
        }
        const lines = text.split('\n').filter(Boolean);
        return lines.length >= 11 ? lines : undefined;
      }, 'the raw NDJSON file to hold 11 lines');
      const rawEvents = rawLines.map((l) => JSON.parse(l) as Record<string, unknown>);
      for (const e of real) expect(rawEvents).toContainEqual(e);
      for (const e of forged) expect(rawEvents).toContainEqual(e);
    } finally {
      await victim.close();
      await c.close();
    }
  });

  it('a batch re-sent with the same token is a duplicate; re-sent after a re-enrollment it is stored again (the documented price)', async () => {
    const c = await startTestCollector();
    try {
      const tok1 = await enrollDevice(c.url, c.enrollSecret, 'dev-takeover-lost');
      const batch = [heartbeatEvent('dev-takeover-lost', 1), heartbeatEvent('dev-takeover-lost', 2)];
      expect(await (await postEvents(c.url, tok1, batch)).json()).toEqual({ accepted: 2, duplicates: 0 });
      // the ack was lost; the same token sends again: idempotent
      expect(await (await postEvents(c.url, tok1, batch)).json()).toEqual({ accepted: 0, duplicates: 2 });
      // the agent re-enrolled (lost token, reinstall) before re-sending: a second copy
      const tok2 = await enrollDevice(c.url, c.enrollSecret, 'dev-takeover-lost');
      expect(await (await postEvents(c.url, tok2, batch)).json()).toEqual({ accepted: 2, duplicates: 0 });
      expect(await (await postEvents(c.url, tok2, batch)).json()).toEqual({ accepted: 0, duplicates: 2 });
      const listed = await eventsOf(c, 'dev-takeover-lost');
      expect(listed.map((e) => [e.id, e.enrollment])).toEqual([
        [batch[0]?.id, 1],
        [batch[1]?.id, 1],
        [batch[0]?.id, 2],
        [batch[1]?.id, 2],
      ]);
      expect(await enrollmentOf(c, 'dev-takeover-lost')).toBe(2);
    } finally {
      await c.close();
    }
  });

  it("a batch of a replaced enrollment is stored but does not set the device's agent or policy version", () => {
    const store = new CollectorStore({ file: join(collectorTempDir(), 'c.db') });
    try {
      const dev = { id: 'dev-takeover-s', hostname: 'h', os: 'linux', agent_version: '1.0.0' };
      expect(store.enrollDevice(dev, 'hash-1', new Date().toISOString())).toBe(1);
      expect(store.enrollDevice(dev, 'hash-2', new Date().toISOString())).toBe(2);
      expect(store.deviceForTokenHash('hash-1')).toBeUndefined();
      expect(store.deviceForTokenHash('hash-2')).toEqual({ id: 'dev-takeover-s', enrollment: 2 });
      const hb = heartbeatEvent('dev-takeover-s', 50);
      const incoming: IncomingEvent = {
        id: String(hb.id),
        seq: 50,
        type: String(hb.type),
        time: String(hb.time),
        ruleId: null,
        agentVersion: '9.9.9',
        policyVersion: 77,
        coverage: null,
        tags: null,
        outboxDepth: null,
        droppedTotal: null,
        policyState: null,
        policyError: null,
        user: null,
        body: JSON.stringify(hb),
      };
      const now = new Date().toISOString();
      // posted with the enrollment-1 token just before it was replaced, committed after
      expect(
        store.insertGroup([{ deviceId: dev.id, enrollment: 1, events: [incoming], receivedAt: now }]),
      ).toEqual([{ accepted: 1, duplicates: 0 }]);
      const [row] = store.listDevices(undefined, 10);
      expect(row).toMatchObject({ id: dev.id, enrollment: 2, agent_version: '1.0.0', policy_version: null });
      // the same event under the current enrollment is new there and sets the versions
      expect(
        store.insertGroup([{ deviceId: dev.id, enrollment: 2, events: [incoming], receivedAt: now }]),
      ).toEqual([{ accepted: 1, duplicates: 0 }]);
      expect(store.listDevices(undefined, 10)[0]).toMatchObject({
        agent_version: '9.9.9',
        policy_version: 77,
      });
      expect(store.eventsAfter(0, 10).map((r) => r.enrollment)).toEqual([1, 2]);
    } finally {
      store.close();
    }
  });
});
