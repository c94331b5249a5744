/**
 * A clean stop is reported before guardd exits: at SIGTERM a real guardd sends agent.stopped to a
 * real guard-collector within its stop budget, and GET /v1/devices shows the device as stopped
 * (not silent, not active); its next start makes it active again. With the collector unreachable,
 * guardd still exits promptly and agent.stopped stays queued, to arrive after the next start.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Collector,
  type Guardd,
  makeKey,
  policyBody,
  startCollectorProcess,
  startGuardd,
  writeSignedPolicy,
} from '../helpers/daemon.js';
import { type RecordingProxy, startRecordingProxy } from '../helpers/recording-proxy.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tgtr-stop-');
let collector: Collector;
let config: Record<string, unknown>;

interface ListedDevice {
  id: string;
  state: string;
  stopped_at: string | null;
}

async function admin<T>(path: string): Promise<T> {
  const res = await fetch(`${collector.url}${path}`, {
    headers: { authorization: `Bearer ${collector.adminToken}` },
  });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status}`);
  return (await res.json()) as T;
}

async function stoppedEvents(deviceId: string): Promise<{ reason: string; seq: number }[]> {
  const r = await admin<{ events: { reason: string; seq: number }[] }>(
    `/v1/events?type=agent.stopped&device_id=${deviceId}`,
  );
  return r.events;
}

async function device(id: string): Promise<ListedDevice | undefined> {
  return (await admin<{ devices: ListedDevice[] }>('/v1/devices')).devices.find((d) => d.id === id);
}

function deviceIdOf(g: Guardd): Promise<string> {
  return waitFor(async () => {
    const { runGuardctl } = await import('../helpers/daemon.js');
    const r = runGuardctl(['--socket-dir', g.socketDir, 'status', '--json']);
    return r.code === 0 ? r.json<{ device_id: string }>().device_id : undefined;
  }, 'device id');
}

beforeAll(async () => {
  const key = makeKey();
  const policyFile = writeSignedPolicy(join(dir, 'policy.dsse.json'), policyBody([], { version: 1 }), key);
  collector = await startCollectorProcess(join(dir, 'collector'), policyFile);
  config = {
    'collector.url': collector.url,
    'collector.enroll_secret_file': join(dir, 'collector', 'enroll-secret'),
    'policy.trusted_keys': [key.publicKeyPem],
    'paths.bootstrap_policy': policyFile,
  };
});

let proxy: RecordingProxy | undefined;
afterAll(async () => {
  await proxy?.close();
});

describe('clean stop', () => {
  it('SIGTERM: the collector has agent.stopped before guardd exits, and lists the device as stopped', async () => {
    let guardd = await startGuardd(join(dir, 'a'), config);
    const id = await deviceIdOf(guardd);
    await waitFor(async () => (await device(id))?.state === 'active', 'device active at the collector');

    expect(await guardd.stop('SIGTERM')).toBe(0);
    // No waiting: guardd exited only after the collector had it.
    const stopped = await stoppedEvents(id);
    expect(stopped).toEqual([expect.objectContaining({ reason: 'SIGTERM' })]);
    const d = await device(id);
    expect(d?.state).toBe('stopped');
    expect(d?.stopped_at).toEqual(expect.any(String));

    // The next start: active again.
    guardd = await startGuardd(join(dir, 'a'), config);
    await waitFor(async () => (await device(id))?.state === 'active', 'device active again');
    expect((await device(id))?.stopped_at).toBeNull();
    expect(await guardd.stop('SIGTERM')).toBe(0);
  }, 60_000);

  it('with the collector unreachable, guardd exits promptly and agent.stopped goes at the next start', async () => {
    proxy = await startRecordingProxy(collector.url);
    let guardd = await startGuardd(join(dir, 'b'), { ...config, 'collector.url': proxy.url });
    const id = await deviceIdOf(guardd);
    await waitFor(async () => (await device(id))?.state === 'active', 'device active at the collector');
    await proxy.close(); // connection refused from now on
    proxy = undefined;

    expect(await guardd.stop('SIGTERM')).toBe(0);
    expect(await stoppedEvents(id)).toEqual([]);
    expect((await device(id))?.state).not.toBe('stopped');

    guardd = await startGuardd(join(dir, 'b'), config);
    const arrived = await waitFor(async () => {
      const s = await stoppedEvents(id);
      return s.length === 1 && s;
    }, 'the queued agent.stopped at the collector');
    expect(arrived[0]?.reason).toBe('SIGTERM');
    await waitFor(async () => (await device(id))?.state === 'active', 'active after the restart');
    await guardd.stop('SIGKILL');
  }, 60_000);
});
