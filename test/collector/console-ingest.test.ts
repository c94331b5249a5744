/**
 * What the browser console shows of a device comes from a real agent: a real guardd (dist/)
 * configured with device tags ships its heartbeats to a real collector on 127.0.0.1, and the
 * collector's store answers the console's device query with those tags (bounded as the event
 * schema takes them), the outbox counters and the policy state.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ConsoleDevice } from '../../src/collector/store/port.js';
import { startTestCollector } from '../helpers/collector.js';
import { startGuardd } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tg-coning-');
const collector = await startTestCollector();
afterAll(() => collector.close());

describe('console device view from a real agent', () => {
  it("shows the agent's device.tags, outbox counters and policy state from its heartbeats", async () => {
    const secretFile = join(dir, 'enroll-secret');
    writeFileSync(secretFile, collector.enrollSecret, { mode: 0o600 });
    const tags = ['ai-lab', 'eng', 'ai-lab', 'x'.repeat(129), ''];
    await startGuardd(join(dir, 'agent'), {
      'device.id': 'console-dev-1',
      'device.tags': tags,
      'collector.url': collector.url,
      'collector.enroll_secret_file': secretFile,
      'shipper.heartbeat_cron': '* * * * * *',
      'sensors.process.enabled': false,
    });
    let device: ConsoleDevice | undefined;
    await waitFor(
      async () => {
        device = await collector.collector.store.consoleDevice('console-dev-1');
        return device !== undefined && device.tags.length > 0;
      },
      'a heartbeat with tags stored',
      { timeoutMs: 60_000 },
    );
    // duplicates, empty and over-long tags are not sent (the schema bounds what a heartbeat carries)
    expect(device?.tags).toEqual(['ai-lab', 'eng']);
    expect(device?.outbox_depth).toEqual(expect.any(Number));
    expect(device?.dropped_total).toBe(0);
    // no policy configured: the heartbeat says `none`
    expect(device?.policy_state).toBe('unknown');
    const page = await collector.collector.store.consoleDevices({
      filter: { tag: 'eng' },
      sort: 'hostname',
      order: 'asc',
      limit: 10,
    });
    expect(page.items.map((d) => d.id)).toEqual(['console-dev-1']);
  });
});
