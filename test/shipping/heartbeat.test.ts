import { describe, expect, test } from 'vitest';
import { isGuardError } from '../../src/common/errors.js';
import { createRootLogger } from '../../src/common/logger.js';
import { Heartbeat } from '../../src/shipping/heartbeat.js';
import { MemoryEventSink } from '../helpers/event-sink.js';
import { waitFor } from '../helpers/wait.js';

const logger = createRootLogger('silent');
const summary = () => ({
  uptime_s: 12,
  policy_version: 3,
  policy_state: 'ok',
  outbox_depth: 0,
  dropped_total: 0,
  counts: { blocked: 1, quarantined: 0, warned: 0, audited: 0, failed: 0 },
  sensors: { process: true, install: false },
});

describe('Heartbeat', () => {
  test('an invalid cron expression is refused with GUARD_CONFIG_INVALID_VALUE', () => {
    let code: string | undefined;
    try {
      new Heartbeat({ cron: 'every five minutes', events: new MemoryEventSink(), summary, logger });
    } catch (err) {
      code = isGuardError(err) ? err.code : 'other';
    }
    expect(code).toBe('GUARD_CONFIG_INVALID_VALUE');
  });

  test('beat() emits a schema-valid agent.heartbeat with the summary', () => {
    const sink = new MemoryEventSink();
    const hb = new Heartbeat({ cron: '*/5 * * * *', events: sink, summary });
    expect(hb.beat()).toBe(true);
    expect(sink.ofType('agent.heartbeat')[0]).toMatchObject({ uptime_s: 12, sensors: { process: true } });
  });

  test('a failing summary skips the beat instead of throwing', () => {
    const sink = new MemoryEventSink();
    const hb = new Heartbeat({
      cron: '*/5 * * * *',
      events: sink,
      summary: () => {
        throw new Error('boom');
      },
      logger,
    });
    expect(hb.beat()).toBe(false);
    expect(sink.events).toHaveLength(0);
  });

  test('the schedule fires (every second here) until stopped; start and stop are idempotent', async () => {
    const sink = new MemoryEventSink();
    const hb = new Heartbeat({ cron: '* * * * * *', events: sink, summary, logger });
    hb.start();
    hb.start();
    await waitFor(() => sink.ofType('agent.heartbeat').length >= 1, 'a scheduled beat', { timeoutMs: 5000 });
    hb.stop();
    hb.stop();
    const after = sink.events.length;
    expect(hb.count).toBe(after);
  });
});
