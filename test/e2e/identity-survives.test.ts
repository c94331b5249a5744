/**
 * The device identity survives a corrupt state DB: a real guardd enrolled with a real collector is
 * stopped, its state DB overwritten with garbage, and started again. It keeps its device id (from
 * the identity file), re-enrolls it, and the collector still lists one device — a new enrollment
 * generation of the same id — holding the events of both runs, the tamper report included.
 */
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  makeKey,
  policyBody,
  runGuardctl,
  startCollectorProcess,
  startGuardd,
  writeSignedPolicy,
} from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tgtr-ident-');

describe('device identity', () => {
  it('a corrupt state DB: same device id at the collector, one device listed, both histories kept', async () => {
    const key = makeKey();
    const policyFile = writeSignedPolicy(join(dir, 'policy.dsse.json'), policyBody([], { version: 1 }), key);
    const collector = await startCollectorProcess(join(dir, 'collector'), policyFile);
    const config = {
      'collector.url': collector.url,
      'collector.enroll_secret_file': join(dir, 'collector', 'enroll-secret'),
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policyFile,
    };
    const admin = async <T>(path: string): Promise<T> => {
      const r = await fetch(`${collector.url}${path}`, {
        headers: { authorization: `Bearer ${collector.adminToken}` },
      });
      return (await r.json()) as T;
    };
    const statusId = (socketDir: string): string =>
      runGuardctl(['--socket-dir', socketDir, 'status', '--json']).json<{ device_id: string }>().device_id;

    let guardd = await startGuardd(join(dir, 'agent'), config);
    const id = statusId(guardd.socketDir);
    const identityFile = join(guardd.stateDir, 'identity.json');
    expect(statSync(identityFile).mode & 0o777).toBe(0o600);
    await waitFor(
      async () =>
        (await admin<{ events: unknown[] }>(`/v1/events?device_id=${id}&type=agent.started`)).events
          .length === 1,
      'the first agent.started at the collector',
    );
    expect(await guardd.stop('SIGTERM')).toBe(0);

    writeFileSync(join(guardd.stateDir, 'guardd.db'), Buffer.alloc(16384, 0x42));
    guardd = await startGuardd(join(dir, 'agent'), config);
    expect(statusId(guardd.socketDir)).toBe(id);

    const tamper = await waitFor(async () => {
      const r = await admin<{ events: { device_id: string; reason: string }[] }>(
        '/v1/events?type=agent.tamper',
      );
      return r.events.length > 0 && r.events;
    }, 'agent.tamper at the collector');
    expect(tamper).toEqual([expect.objectContaining({ device_id: id, reason: 'state_db_corrupt' })]);

    const devices = (
      await admin<{ devices: { id: string; enrollment: number; state: string }[] }>('/v1/devices')
    ).devices;
    expect(devices).toEqual([expect.objectContaining({ id, enrollment: 2, state: 'active' })]);
    const started = await admin<{ events: unknown[] }>(`/v1/events?device_id=${id}&type=agent.started`);
    expect(started.events).toHaveLength(2);
    await guardd.stop('SIGTERM');
    await collector.stop();
  }, 60_000);
});
