/**
 * guardd's stop steps are bounded: a step that never ends is logged by name and left behind, a
 * failing one is logged, a quick one is not logged at all.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createRootLogger } from '../../src/common/logger.js';
import { boundedStep } from '../../src/daemon/bounded-step.js';

function capture() {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d) => {
    text += d;
  });
  return { logger: createRootLogger('info', out), lines: () => text.split('\n').filter((l) => l) };
}

describe('boundedStep', () => {
  it('leaves a step that never ends after its limit, naming it', async () => {
    const { logger, lines } = capture();
    const outcome = await boundedStep('actions', () => new Promise(() => {}), { logger, limitMs: 50 });
    expect(outcome).toBe('late');
    const logged = lines().map((l) => JSON.parse(l) as { step: string; limit_ms: number; msg: string });
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ step: 'actions', limit_ms: 50 });
    expect(logged[0]?.msg).toMatch(/did not end in time/);
  });

  it('logs a failing step and does not throw', async () => {
    const { logger, lines } = capture();
    const outcome = await boundedStep('control', () => Promise.reject(new Error('EADDRINUSE here')), {
      logger,
      limitMs: 10_000,
    });
    expect(outcome).toBe('failed');
    expect(JSON.parse(lines()[0] ?? '{}')).toMatchObject({ step: 'control', err: 'EADDRINUSE here' });
  });

  it('says nothing about a step that ends in time', async () => {
    const { logger, lines } = capture();
    expect(await boundedStep('sensors', () => Promise.resolve(), { logger, limitMs: 10_000 })).toBe('done');
    expect(lines()).toEqual([]);
  });
});
