/**
 * warn, monitor and exceptions for processes through the real pipeline: the tool keeps running,
 * the user is told (warn, would-block) or not (excepted), and the event says which.
 */
import { describe, expect, it } from 'vitest';
import type { PolicyBody } from '../../src/policy/policy-types.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import { alive, launch, makeBannedFixtures, policy, startPipeline } from '../sensors/process/harness.js';

describe.runIf(process.platform === 'linux')('NotifyProcessAction through the pipeline', () => {
  const dir = tempDir('tg-warn-');

  async function runWith(body: PolicyBody, binary: string, keepObservations = false) {
    const p = await startPipeline(body, { keepObservations });
    const l = launch(binary, ['30']);
    const pid = l.child.pid as number;
    return { p, l, pid };
  }

  it('warn: tells the user and lets the tool run', async () => {
    const f = makeBannedFixtures(dir, 'warn');
    const { p, l, pid } = await runWith(policy([f.rule]), f.binary);
    const [e] = await waitFor(() => {
      const ev = p.events.ofType('process.warned').filter((x) => x.pid === pid);
      return ev.length > 0 ? ev : null;
    }, 'warned event');
    await p.stop();
    expect(e?.outcome).toMatchObject({ action_taken: 'warned', error: null });
    expect(p.notifier.calls.at(-1)?.message).toEqual({
      title: 'Banned Tool is not approved',
      body: f.rule.message,
      url: f.rule.url,
    });
    expect(alive(pid)).toBe(true);
    l.child.kill('SIGKILL');
  });

  it('monitor mode: block becomes "would block", the tool keeps running', async () => {
    const f = makeBannedFixtures(dir, 'block');
    const { p, l, pid } = await runWith(policy([f.rule], 'monitor'), f.binary);
    const [e] = await waitFor(() => {
      const ev = p.events.ofType('process.warned').filter((x) => x.pid === pid);
      return ev.length > 0 ? ev : null;
    }, 'would-block event');
    await p.stop();
    expect(e?.outcome).toMatchObject({ action_taken: 'would_block' });
    expect(e?.mode).toBe('monitor');
    expect(p.notifier.calls.at(-1)?.message.title).toBe('Banned Tool would be blocked (monitor mode)');
    expect(p.events.ofType('process.blocked')).toEqual([]);
    expect(alive(pid)).toBe(true);
    l.child.kill('SIGKILL');
  });

  it('an unexpired exception for the user lets the tool run with no event; an expired one does not', async () => {
    const f = makeBannedFixtures(dir, 'block');
    const body = (expires: string): PolicyBody => ({
      ...policy([f.rule]),
      exceptions: [{ rule: f.rule.id, users: ['root', 'u1000'], expires_at: expires }],
    });
    const excepted = await runWith(body('2099-01-01T00:00:00Z'), f.binary, true);
    // Seen by the sensor and fully handled (nothing in flight) → matched, excepted, no event.
    await waitFor(() => excepted.p.observed.some((o) => o.pid === excepted.pid), 'process observed');
    await excepted.p.stop();
    expect(excepted.p.events.events).toEqual([]);
    expect(alive(excepted.pid)).toBe(true);
    excepted.l.child.kill('SIGKILL');

    const expired = await runWith(body('2020-01-01T00:00:00Z'), f.binary);
    expect(await expired.l.exited).toBe('SIGKILL');
    await expired.p.stop();
  });
});
