/**
 * Owns the `warn` action for installed things: tell the owner of a banned package or artifact
 * that it is not approved, and leave it in place. Rate limiting is the enforcer's job; this action
 * sends one notification per call.
 */
import type { Logger } from '../../common/logger.js';
import type { Decision } from '../../policy/matcher.js';
import type { PackageObservation, PathObservation } from '../../sensors/observation.js';
import type { Action, ActionResult } from '../action.js';
import type { UserNotifier } from '../notifier.js';

export interface NotifyInstallActionOptions {
  readonly notifier: UserNotifier;
  readonly logger: Logger;
}

export class NotifyInstallAction implements Action<PackageObservation | PathObservation> {
  private readonly log: Logger;

  constructor(private readonly options: NotifyInstallActionOptions) {
    this.log = options.logger.child({ component: 'action.notify-install' });
  }

  /** Tells the owner; resolves with `warned` (error set when no channel reached them). Never rejects. */
  async execute(obs: PackageObservation | PathObservation, decision: Decision): Promise<ActionResult> {
    const started = performance.now();
    const what = obs.kind === 'package' ? `${obs.name}${obs.version ? `@${obs.version}` : ''}` : obs.path;
    try {
      const r = await this.options.notifier.notify(
        { uid: obs.owner.uid, user: obs.owner.user, tty: null },
        { title: `toolguard: ${what} is not approved`, body: decision.message, url: decision.url },
      );
      return {
        actionTaken: 'warned',
        latencyMs: Math.round((performance.now() - started) * 100) / 100,
        error: r.error,
        details: { notified: r.desktop || r.terminal },
      };
    } catch (err) {
      this.log.warn({ err }, 'notifier threw');
      return {
        actionTaken: 'warned',
        latencyMs: Math.round((performance.now() - started) * 100) / 100,
        error: (err as Error).message,
        details: { notified: false },
      };
    }
  }
}
