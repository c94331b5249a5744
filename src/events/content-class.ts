/**
 * Owns the content classes of everything guardd sends: each event field (`x-class` in
 * event.schema.json) and each request body field and header (src/shipping/agent-requests.ts)
 * declares what kind of value it carries, and whether it is personal follows from that class alone.
 * Nobody hand-keeps a "personal" flag: a field that can carry a path gets class `path`, and
 * `guardctl explain`, docs/data-collected.md and the tests read `personal` from here.
 *
 * Personal = the value can carry a user name, a path (home directories hold user names and
 * project names), a command line or a host name, or free text that may quote any of them.
 */

/** Every content class, with whether a value of it is personal and what it means. */
export const CONTENT_CLASSES = {
  path: { personal: true, meaning: 'a file system path (may contain a user name or a project name)' },
  user: { personal: true, meaning: 'a user name' },
  user_id: { personal: true, meaning: 'a numeric user id (names a user on this machine)' },
  cmdline: { personal: true, meaning: 'a command line (arguments name files, projects, hosts)' },
  hostname: { personal: true, meaning: "the machine's host name (often a person's name)" },
  text: {
    personal: true,
    meaning: 'free text such as an error message or a policy source, which may quote a path or URL',
  },
  machine_id: {
    personal: false,
    meaning: 'a random id of this machine or its token, linked to the host name at the collector',
  },
  secret: { personal: false, meaning: 'a shared secret or bearer token (never logged)' },
  id: {
    personal: false,
    meaning: 'a generated id or a policy-defined name (rule, package, quarantine entry)',
  },
  program: { personal: false, meaning: 'a program name (at most 15 characters on Linux)' },
  os: { personal: false, meaning: 'an operating system, release or software version' },
  enum: { personal: false, meaning: 'one of a fixed set of values' },
  count: { personal: false, meaning: 'a number: counter, process id, size, duration, sequence' },
  flag: { personal: false, meaning: 'true or false' },
  time: { personal: false, meaning: 'a point in time' },
  hash: { personal: false, meaning: 'a SHA-256 digest' },
  device_path: { personal: false, meaning: 'a system device path (e.g. /dev/pts/3)' },
  object: { personal: false, meaning: 'a group of fields (each listed with its own class)' },
} as const satisfies Record<string, { personal: boolean; meaning: string }>;

export type ContentClass = keyof typeof CONTENT_CLASSES;

export function isContentClass(v: unknown): v is ContentClass {
  return typeof v === 'string' && Object.hasOwn(CONTENT_CLASSES, v);
}

/** Whether a value of `cls` is personal (the only place this is decided). */
export function isPersonal(cls: ContentClass): boolean {
  return CONTENT_CLASSES[cls].personal;
}
