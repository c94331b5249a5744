/**
 * Owns the sensor contract. A sensor only observes: it reads the machine and hands observations
 * to `onObservation`; matching and enforcement happen downstream. Sensors are registered in
 * src/sensors/registry.ts (one line each) and started by the daemon.
 */
import type { Matcher } from '../policy/matcher.js';
import type { Observation } from './observation.js';

export interface SensorStatus {
  readonly name: string;
  readonly running: boolean;
  /** Source-specific facts for `guardctl status` (e.g. source, interval_ms, roots watched). */
  readonly details: Readonly<Record<string, unknown>>;
  /** Things skipped and counted instead of crashing (exited mid-scan, unreadable, too large…). */
  readonly skipped: Readonly<Record<string, number>>;
}

export interface Sensor {
  readonly name: string;
  /**
   * Starts observing. Called once by the daemon after the first policy is in force (possibly the
   * empty one). Observations of things present at start are reported too (the first full scan).
   */
  start(): Promise<void>;
  /** Stops all timers and watchers; idempotent; resolves when nothing more will be reported. */
  stop(): Promise<void>;
  /**
   * Called when a new matcher is in force (policy applied). Synchronous and cheap: the sensor uses
   * it for its next observation (e.g. which costly fields to fill, which paths to watch) and may
   * rescan what it already knows.
   */
  setMatcher(matcher: Matcher): void;
  status(): SensorStatus;
  /**
   * The action on `obs` was turned away by a tree that did not answer in time
   * (GUARD_QUARANTINE_BUSY): nothing was done. The sensor reports `obs` again on a later look
   * instead of counting it as handled (optional: sensors whose observations have no such action).
   */
  turnedAway?(obs: Observation): void;
}

/** What the pipeline gives each sensor. `onObservation` never throws; it may be async. */
export type ObservationHandler = (obs: Observation) => void | Promise<void>;
