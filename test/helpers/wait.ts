/** Waiting for a condition with a deadline: the only synchronisation tests use (no bare sleeps). */

/** Thrown by a probe when waiting longer cannot help (the process it waits for died): ends the wait at once. */
export class WaitAborted extends Error {}

/** Polls `probe` every `intervalMs` until it returns a non-undefined/non-false value or `timeoutMs` passes. */
export async function waitFor<T>(
  probe: () => T | undefined | false | null | Promise<T | undefined | false | null>,
  what: string,
  { timeoutMs = 15_000, intervalMs = 25 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false && v !== null) return v as T;
    } catch (err) {
      if (err instanceof WaitAborted) throw err;
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
