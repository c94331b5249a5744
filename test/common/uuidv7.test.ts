import { describe, expect, it } from 'vitest';
import { isUuidV7, uuidv7 } from '../../src/common/uuidv7.js';

describe('uuidv7', () => {
  it('is valid and strictly increasing even within one millisecond and when the clock steps back', () => {
    const ids = [uuidv7(1_700_000_000_000)];
    for (let i = 0; i < 5000; i++) ids.push(uuidv7(1_700_000_000_000 - (i % 3)));
    for (const id of ids) expect(isUuidV7(id)).toBe(true);
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!).toBe(true);
  });

  it('encodes the time in the first 48 bits', () => {
    const id = uuidv7(Date.UTC(2030, 0, 1));
    expect(Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBeGreaterThanOrEqual(
      Date.UTC(2030, 0, 1),
    );
  });
});
