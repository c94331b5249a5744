/**
 * Owns the shape of events v1 (DESIGN.md "Events"). Every outcome in the pipeline becomes one
 * event; the JSON Schema (src/events/event.schema.json) is the truth that tests validate every
 * emitted event against, and that `guardctl explain` and docs/data-collected.md are generated from.
 */

export const EVENT_TYPES = [
  'process.blocked',
  'process.warned',
  'process.audited',
  'process.denied',
  'package.quarantined',
  'package.warned',
  'package.audited',
  'path.quarantined',
  'path.warned',
  'path.audited',
  'policy.applied',
  'policy.rejected',
  'policy.stale',
  'policy.shadow_match',
  'agent.started',
  'agent.stopped',
  'agent.heartbeat',
  'agent.tamper',
  'events.dropped',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

/**
 * Largest event (JSON bytes, one NDJSON line) the collector accepts. The agent's outbox cuts a
 * command line that would make an event larger (the schema alone allows ~1 MiB of argv), so no
 * schema-valid event, a block in particular, is refused on the way.
 */
export const MAX_EVENT_BYTES = 256 * 1024;

/** Fields every event carries, filled by the outbox at append time. */
export interface EventEnvelope {
  /** UUIDv7; the idempotency key end to end. */
  readonly id: string;
  /** RFC 3339 UTC with milliseconds. */
  readonly time: string;
  /** Per-device monotonic sequence number (never reused, survives restarts). */
  readonly seq: number;
  readonly device_id: string;
  readonly hostname: string;
  readonly type: EventType;
  readonly agent_version: string;
}

/** A stored event: the envelope plus the type's own fields. */
export type AgentEvent = EventEnvelope & Readonly<Record<string, unknown>>;

/**
 * Where pipeline stages put events. `emit` appends durably to the outbox (in one SQLite
 * transaction) before it returns; the returned event is exactly what will be sent.
 * Safe to call from any stage, any number of times; never throws for a storage hiccup that it
 * can count instead (a failing append is logged and counted by the implementation).
 */
export interface EventSink {
  emit(type: EventType, fields: Readonly<Record<string, unknown>>): AgentEvent | null;
}
