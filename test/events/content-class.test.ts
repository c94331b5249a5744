/**
 * `personal` follows from each field's content class (x-class in event.schema.json), never from a
 * hand-kept flag: every field has a known class, the catalogue and the generated docs agree with
 * the class, and the fields that carry paths, users, command lines or host names are personal.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { CONTENT_CLASSES, isContentClass } from '../../src/events/content-class.js';
import { EVENT_FIELDS } from '../../src/events/event-schema.js';
import { ROOT } from '../helpers/daemon.js';

const field = (path: string, type: string) =>
  EVENT_FIELDS.find((f) => f.path === path && f.eventTypes.includes(type as never));

describe('content classes decide what is personal', () => {
  test('every event field declares a known content class, and personal is what the class says', () => {
    for (const f of EVENT_FIELDS) {
      expect(isContentClass(f.contentClass), f.path).toBe(true);
      expect(f.personal, `${f.path} (${f.contentClass})`).toBe(CONTENT_CLASSES[f.contentClass].personal);
    }
  });

  test('the personal classes are the ones that can carry a user name, a path, a command line or a host name', () => {
    const personal = Object.entries(CONTENT_CLASSES)
      .filter(([, c]) => c.personal)
      .map(([n]) => n)
      .sort();
    expect(personal).toEqual(['cmdline', 'hostname', 'path', 'text', 'user', 'user_id']);
  });

  test.each([
    ['outcome.details.links_removed', 'package.quarantined', 'path'],
    ['detail', 'agent.tamper', 'text'],
    ['store_recovered.moved_to', 'agent.started', 'path'],
    ['source', 'policy.applied', 'path'],
    ['hostname', 'agent.heartbeat', 'hostname'],
    ['user', 'process.blocked', 'user'],
    ['uid', 'process.blocked', 'user_id'],
    ['argv', 'process.blocked', 'cmdline'],
    ['exe', 'process.blocked', 'path'],
    ['package.path', 'package.quarantined', 'path'],
    ['path', 'path.quarantined', 'path'],
    ['outcome.error', 'process.blocked', 'text'],
  ])('%s of %s has class %s and is personal', (path, type, cls) => {
    const f = field(path, type);
    expect(f?.contentClass).toBe(cls);
    expect(f?.personal).toBe(true);
  });

  test('docs/data-collected.md marks exactly the fields whose class is personal', () => {
    const doc = readFileSync(join(ROOT, 'docs/data-collected.md'), 'utf8');
    const fieldsTable = doc.slice(doc.indexOf('| field | type | class | personal |'));
    const rows = fieldsTable
      .split('\n')
      .filter((l) => l.startsWith('| `'))
      .map((l) => l.split(/(?<!\\)\|/).map((c) => c.trim()));
    expect(rows).toHaveLength(EVENT_FIELDS.length);
    rows.forEach((cells, i) => {
      const f = EVENT_FIELDS[i];
      expect(cells[1], `row ${i}`).toBe(`\`${f?.path}\``);
      expect(cells[3], f?.path).toBe(f?.contentClass);
      expect(cells[4] === 'yes', f?.path).toBe(CONTENT_CLASSES[f?.contentClass ?? 'enum'].personal);
    });
  });
});
