/** An in-memory EventSink for component tests (the daemon uses the SQLite outbox). */
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
    this.events.push(event);
    return event;
  }

  ofType(type: EventType): AgentEvent[] {
    return this.events.filter((e) => e.type === type);
  }
}
