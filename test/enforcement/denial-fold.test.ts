/**
 * Folding repeated refusals: the burst is recorded one by one, the rest of a window as one event
 * with its count when the window ends (or at flush), keys apart, and nothing lost at the key bound.
 */
import { describe, expect, it } from 'vitest';
import { DenialFold } from '../../src/enforcement/denial-fold.js';
import { waitFor } from '../helpers/wait.js';

function recorder<T = string>() {
  const seen: { item: T; repeats: number }[] = [];
  return {
    seen,
    emit: (item: T, repeats: number): void => {
      seen.push({ item, repeats });
    },
  };
}

describe('DenialFold', () => {
  it('records the burst one by one, folds the rest of the window into one counted event at flush', () => {
    const r = recorder();
    const fold = new DenialFold<string>({ emit: r.emit, now: () => 1_000, windowMs: 60_000, burst: 3 });
    for (let i = 0; i < 10; i++) fold.add('u1/rule/file', `attempt ${i}`);
    expect(r.seen.map((s) => s.repeats)).toEqual([1, 1, 1]);
    fold.flush();
    expect(r.seen).toHaveLength(4);
    expect(r.seen[3]).toEqual({ item: 'attempt 9', repeats: 7 });
    expect(r.seen.reduce((n, s) => n + s.repeats, 0)).toBe(10);
    fold.flush();
    expect(r.seen).toHaveLength(4);
  });

  it('records the fold when its window ends, then starts over with a new burst', async () => {
    const r = recorder();
    let now = 5_000;
    const fold = new DenialFold<string>({ emit: r.emit, now: () => now, windowMs: 50, burst: 1 });
    for (let i = 0; i < 4; i++) fold.add('k', `a${i}`);
    expect(r.seen).toEqual([{ item: 'a0', repeats: 1 }]);
    // the window's timer (real, 50 ms) records the fold of a1..a3
    await waitFor(() => r.seen.length === 2, 'the folded event');
    expect(r.seen[1]).toEqual({ item: 'a3', repeats: 3 });
    now += 50;
    fold.add('k', 'b0');
    expect(r.seen[2]).toEqual({ item: 'b0', repeats: 1 });
  });

  it("an emit that throws from the window's timer goes to onError, never out of the timer", async () => {
    const errors: unknown[] = [];
    let calls = 0;
    const fold = new DenialFold<string>({
      emit: () => {
        if (++calls > 1) throw new Error('outbox closed');
      },
      onError: (err) => errors.push(err),
      now: () => 1,
      windowMs: 20,
      burst: 1,
    });
    fold.add('k', 'a');
    fold.add('k', 'b');
    await waitFor(() => errors.length === 1, 'the timer error reported');
    expect((errors[0] as Error).message).toBe('outbox closed');
  });

  it('keeps keys apart, and a clock stepped back closes the window (its fold recorded) instead of stretching it', () => {
    const r = recorder();
    let now = 10_000;
    const fold = new DenialFold<string>({ emit: r.emit, now: () => now, windowMs: 60_000, burst: 1 });
    fold.add('a', 'a0');
    fold.add('b', 'b0');
    fold.add('a', 'a1');
    expect(r.seen.map((s) => s.item)).toEqual(['a0', 'b0']);
    now = 9_000;
    fold.add('a', 'a2');
    expect(r.seen.slice(2)).toEqual([
      { item: 'a1', repeats: 1 },
      { item: 'a2', repeats: 1 },
    ]);
    fold.flush();
  });

  it('bounds the keys it tracks: the oldest window is closed and its fold recorded, none lost', () => {
    const r = recorder<number>();
    const fold = new DenialFold<number>({ emit: r.emit, now: () => 0, windowMs: 60_000, burst: 1 });
    for (let k = 0; k < 5000; k++) {
      fold.add(`k${k}`, k);
      fold.add(`k${k}`, k);
    }
    fold.flush();
    expect(r.seen.reduce((n, s) => n + s.repeats, 0)).toBe(10_000);
  });
});
