/**
 * An in-memory EventSink for component tests (the daemon uses the SQLite outbox). Every event is
 * validated against the v1 schema (src/events/event.schema.json) as it is emitted and a violation
 * throws, so every event emitted anywhere in the test suite is proven to match the documented wire
 * format (and hence `guardctl explain`).
 */
import { validateEvent } from '../../src/events/event-schema.js';
import type { AgentEvent, EventSink, EventType } from '../../src/events/event-types.js';

export class MemoryEventSink implements EventSink {
  readonly events: AgentEvent[] = [];
  private seq = 0;

  emit(type: EventType, fields: Readonly<Record<string, unknown>>): AgentEvent {
    const event = {
      ...fields,
      id: `00000000-0000-7000-8000-${String(++this.seq).padStart(12, '0')}`,
      time: new Date().toISOString(),
      seq: this.seq,
      device_id: 'test-device',
      hostname: 'test-host',
      type,
      agent_version: '0.0.0-test',
    } as AgentEvent;
    const v = validateEvent(event);
    if (!v.ok) {
      throw new Error(
        `event ${type} violates src/events/event.schema.json: ${v.errors.join('; ')}\n${JSON.stringify(event).slice(0, 2000)}`,
      );
    }
    this.events.push(event);
    return event;
  }

  ofType(type: EventType): AgentEvent[] {
    return this.events.filter((e) => e.type === type);
  }
}
