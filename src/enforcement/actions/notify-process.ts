/**
 * Owns the `warn` action for processes (and `block` in monitor mode): tell the user on the
 * process's terminal and desktop why the tool is not approved, and let it run. Rate limiting per
 * user and rule is the enforcer's job; this action only notifies, within a bounded wait.
 */
import type { Logger } from '../../common/logger.js';
import type { Decision } from '../../policy/matcher.js';
import type { ProcessObservation } from '../../sensors/observation.js';
import type { Action, ActionResult } from '../action.js';
import { notifyWithin, type UserNotifier } from '../notifier.js';

export interface NotifyProcessActionOptions {
  readonly notifier: UserNotifier;
  readonly logger: Logger;
  /** Longest wait for the notifier (ms). */
  readonly waitMs?: number;
}

/** Nothing waits on a warning but its event; 1 s bounds a notifier that misbehaves. */
export const WARN_NOTIFY_WAIT_MS = 1000;

export class NotifyProcessAction implements Action<ProcessObservation> {
  constructor(private readonly options: NotifyProcessActionOptions) {}

  async execute(obs: ProcessObservation, decision: Decision): Promise<ActionResult> {
    const started = performance.now();
    const wouldBlock = decision.rule.action === 'block';
    const n = await notifyWithin(
      this.options.notifier,
      { uid: obs.owner.uid, user: obs.owner.user, tty: obs.tty },
      {
        title: wouldBlock
          ? `${decision.rule.name} would be blocked (monitor mode)`
          : `${decision.rule.name} is not approved`,
        body: decision.message,
        url: decision.url,
      },
      this.options.waitMs ?? WARN_NOTIFY_WAIT_MS,
    );
    if (n.error) this.options.logger.debug({ pid: obs.pid, error: n.error }, 'warning partly delivered');
    return {
      actionTaken: 'warned',
      latencyMs: Math.round((performance.now() - started) * 100) / 100,
      // Not reaching a terminal or desktop is not a failure of the warning: the event records it.
      error: null,
      details: {
        notified: { terminal: n.terminal, desktop: n.desktop, ...(n.error ? { error: n.error } : {}) },
      },
    };
  }
}
