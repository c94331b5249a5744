/**
 * Owns telling the user why an exec was refused (pre-exec deny): the kernel has already answered
 * FAN_DENY, the shell prints "Permission denied", and this action writes the rule's message and
 * URL to the terminal of the process that tried the exec and sends the desktop notification, like
 * the block action does before its kill. Nothing else: no signal is ever sent (the program never
 * ran; the process that tried keeps running its old program). Rate limiting is the enforcer's.
 */
import type { Logger } from '../../common/logger.js';
import type { Decision } from '../../policy/matcher.js';
import type { ProcessObservation } from '../../sensors/observation.js';
import type { Action, ActionResult } from '../action.js';
import { notifyWithin, type UserNotifier } from '../notifier.js';

export interface DenyExecActionOptions {
  readonly notifier: UserNotifier;
  readonly logger: Logger;
  /** Longest wait for the notifier (ms). */
  readonly waitMs?: number;
}

/** Nothing waits on the message but its event (the exec is already refused); 1 s bounds a stuck notifier. */
export const DENY_NOTIFY_WAIT_MS = 1000;

export class DenyExecAction implements Action<ProcessObservation> {
  constructor(private readonly options: DenyExecActionOptions) {}

  async execute(obs: ProcessObservation, decision: Decision): Promise<ActionResult> {
    const started = performance.now();
    const n = await notifyWithin(
      this.options.notifier,
      { uid: obs.owner.uid, user: obs.owner.user, tty: obs.tty },
      {
        title: `denied ${decision.rule.name} (${obs.name})`,
        body: decision.message,
        url: decision.url,
      },
      this.options.waitMs ?? DENY_NOTIFY_WAIT_MS,
    );
    if (n.error) this.options.logger.debug({ pid: obs.pid, error: n.error }, 'deny message partly delivered');
    return {
      actionTaken: 'denied',
      latencyMs: Math.round((performance.now() - started) * 100) / 100,
      // The refusal is done; not reaching a terminal is recorded, not a failure.
      error: null,
      details: {
        notified: { terminal: n.terminal, desktop: n.desktop, ...(n.error ? { error: n.error } : {}) },
      },
    };
  }
}
