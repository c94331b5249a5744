/**
 * Owns the bound on one step of guardd's stop: a step that has not ended after its limit is logged
 * by name and left behind, so the rest of the stop (agent.stopped, the final send, the DB close)
 * still happens and the service manager never has to kill a guardd stuck on one component.
 */
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';

/** Longest one stop step may take (ms) before guardd logs it as stuck and goes on stopping. */
export const STOP_STEP_LIMIT_MS = 10_000;

/** Runs `work`; resolves when it ends, fails (logged) or outlasts `limitMs` (logged). Never throws. */
export async function boundedStep(
  name: string,
  work: () => Promise<unknown>,
  { logger, limitMs = STOP_STEP_LIMIT_MS }: { logger: Logger; limitMs?: number },
): Promise<'done' | 'late' | 'failed'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((res) => {
    timer = setTimeout(() => res('late'), limitMs);
  });
  try {
    const outcome = await Promise.race([work().then(() => 'done' as const), late]);
    if (outcome === 'late')
      logger.error({ step: name, limit_ms: limitMs }, 'stop step did not end in time; stopping anyway');
    return outcome;
  } catch (err) {
    logger.error({ step: name, err: errorMessage(err) }, 'stop step failed; stopping anyway');
    return 'failed';
  } finally {
    clearTimeout(timer);
  }
}
