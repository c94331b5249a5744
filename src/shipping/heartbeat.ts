/**
 * Owns the agent's heartbeat: an `agent.heartbeat` event on a node-cron schedule
 * (`shipper.heartbeat_cron`, default every 5 minutes) carrying the health summary the daemon
 * provides, so the collector can tell a silent machine from a healthy quiet one.
 */
import cron, { type ScheduledTask } from 'node-cron';
import { GuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { EventSink } from '../events/event-types.js';

export interface HeartbeatOptions {
  /** node-cron expression (5 or 6 fields). Invalid → GUARD_CONFIG_INVALID_VALUE at construction. */
  readonly cron: string;
  readonly events: EventSink;
  /**
   * The health summary: the agent.heartbeat fields of the schema (uptime_s, policy_version,
   * policy_state, outbox_depth, dropped_total, counts, sensors; optional set_aside_total,
   * shipped_total). Called once per beat; a throw is logged and that beat skipped.
   */
  readonly summary: () => Record<string, unknown>;
  /** Optional: failures of the summary callback are logged here. */
  readonly logger?: Logger;
}

export class Heartbeat {
  private task: ScheduledTask | null = null;
  private readonly log: Logger | null;
  private beats = 0;

  constructor(private readonly options: HeartbeatOptions) {
    if (!cron.validate(options.cron))
      throw new GuardError(
        'GUARD_CONFIG_INVALID_VALUE',
        `shipper.heartbeat_cron "${options.cron}" is not a valid cron expression`,
        { key: 'shipper.heartbeat_cron', value: options.cron },
      );
    this.log = options.logger?.child({ component: 'shipping.heartbeat' }) ?? null;
  }

  /** Starts the schedule. Calling it twice does nothing. */
  start(): void {
    if (this.task) return;
    this.task = cron.schedule(
      this.options.cron,
      () => {
        this.beat();
      },
      { name: 'toolguard-heartbeat', noOverlap: true },
    );
  }

  /** Stops the schedule. Idempotent. */
  stop(): void {
    const t = this.task;
    this.task = null;
    if (t) void t.stop();
  }

  /** Emits one heartbeat now (also used by the schedule). Returns false when the summary failed. */
  beat(): boolean {
    let fields: Record<string, unknown>;
    try {
      fields = this.options.summary();
    } catch (err) {
      this.log?.error({ err }, 'heartbeat summary failed; beat skipped');
      return false;
    }
    this.beats++;
    return this.options.events.emit('agent.heartbeat', fields) !== null;
  }

  /** Beats emitted since start. */
  get count(): number {
    return this.beats;
  }
}
