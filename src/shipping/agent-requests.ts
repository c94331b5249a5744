/**
 * Owns the list of every HTTP request guardd makes and of what guard-collector keeps about a
 * device: method, URL path, when, every body field and every header, each with its content class
 * (src/events/content-class.ts, which decides whether it is personal). The client builds the
 * enroll body and its headers from the declarations here (`enrollBody`, `ENROLL_HEADERS`,
 * `EVENTS_HEADERS`), the policy fetch its headers from POLICY_FETCH_HEADERS, and `guardctl
 * explain` / docs/data-collected.md print this list, so the listing and the wire are one thing.
 * The recording-proxy test (test/e2e/wire-transparency.test.ts) fails on any request, body field
 * or header that is on the wire but not here.
 */
import { type ContentClass, isPersonal } from '../events/content-class.js';
import { POLICY_FETCH_HEADERS } from '../policy/policy-updater.js';
import { STOP_SEND_BUDGET_MS } from './shipper.js';

/** One field of a request body (dotted path, as `fieldPathsOf` names event fields). */
export interface RequestField {
  readonly path: string;
  readonly contentClass: ContentClass;
  readonly personal: boolean;
  readonly description: string;
}

/** One request header (lower-case name). `identifies` = it tells the collector which machine sent it. */
export interface RequestHeader {
  readonly name: string;
  readonly value: string;
  readonly contentClass: ContentClass;
  readonly personal: boolean;
  readonly identifies: boolean;
}

export type RequestKind = 'enroll' | 'events' | 'policy';

export interface AgentRequest {
  readonly kind: RequestKind;
  readonly method: 'GET' | 'POST';
  /** Path relative to collector.url (the policy: relative to the collector unless policy.url is set). */
  readonly path: string;
  readonly when: string;
  readonly body: string;
  /** The body's fields; for `events` the event fields (listed separately, FIELDS). */
  readonly fields: readonly RequestField[];
  readonly headers: readonly RequestHeader[];
}

function field(path: string, contentClass: ContentClass, description: string): RequestField {
  return { path, contentClass, personal: isPersonal(contentClass), description };
}

function header(name: string, value: string, contentClass: ContentClass, identifies = false): RequestHeader {
  return { name, value, contentClass, personal: isPersonal(contentClass), identifies };
}

/** The fields of `POST /v1/enroll`, in the order `enrollBody` writes them. */
export const ENROLL_FIELDS: readonly RequestField[] = Object.freeze([
  field(
    'enroll_secret',
    'secret',
    'The enroll secret (collector.enroll_secret or _file), shared by the fleet.',
  ),
  field('device', 'object', 'This machine.'),
  field(
    'device.id',
    'machine_id',
    'The device id: generated once and kept in the identity file, so it survives a lost state DB (or set by device.id).',
  ),
  field('device.hostname', 'hostname', "The machine's host name."),
  field(
    'device.os',
    'os',
    'Operating system and kernel release, e.g. "linux 6.8.0-45-generic" (at most 64 characters).',
  ),
  field('device.agent_version', 'os', 'Version of guardd.'),
]);

/** The values of an enroll body. */
export interface EnrollValues {
  readonly secret: string;
  readonly deviceId: string;
  readonly hostname: string;
  readonly os: string;
  readonly agentVersion: string;
}

/** The enroll body: exactly ENROLL_FIELDS (a unit test and the recording proxy hold it to that). */
export function enrollBody(v: EnrollValues): Record<string, unknown> {
  return {
    enroll_secret: v.secret,
    device: { id: v.deviceId, hostname: v.hostname, os: v.os.slice(0, 64), agent_version: v.agentVersion },
  };
}

/** `user-agent` of the agent's requests. */
export function agentUserAgent(agentVersion: string): string {
  return `guardd/${agentVersion}`;
}

/** Headers Node's HTTP client adds to every request. */
const TRANSPORT_HEADERS: readonly RequestHeader[] = [
  header('host', 'the collector host and port', 'enum'),
  header('connection', 'keep-alive', 'enum'),
];

export const ENROLL_HEADERS: readonly RequestHeader[] = Object.freeze([
  header('content-type', 'application/json', 'enum'),
  header('content-length', 'body size in bytes', 'count'),
  header('user-agent', 'guardd/<version>', 'os'),
  ...TRANSPORT_HEADERS,
]);

export const EVENTS_HEADERS: readonly RequestHeader[] = Object.freeze([
  header('content-type', 'application/x-ndjson', 'enum'),
  header('content-encoding', 'gzip', 'enum'),
  header('authorization', 'Bearer <device token> (the collector maps it to this device)', 'secret', true),
  header('content-length', 'body size in bytes', 'count'),
  header('user-agent', 'guardd/<version>', 'os'),
  ...TRANSPORT_HEADERS,
]);

const POLICY_HEADERS: readonly RequestHeader[] = Object.freeze([
  ...POLICY_FETCH_HEADERS.map((h) =>
    header(h.name, h.value, h.name === 'user-agent' ? 'os' : h.name === 'if-none-match' ? 'hash' : 'enum'),
  ),
  ...TRANSPORT_HEADERS,
]);

/** When each request is made, with the settings that set it. */
export interface RequestTiming {
  readonly shipperIntervalMs: number;
  readonly policyCron: string;
  readonly heartbeatCron: string;
}

/** Every request guardd makes, in the order a fresh machine makes them. */
export function agentRequests(t: RequestTiming | null): AgentRequest[] {
  const interval = t ? `every ${t.shipperIntervalMs} ms` : 'every shipper.interval_ms';
  const policyCron = t ? `on the schedule "${t.policyCron}" (policy.refresh_cron)` : 'on policy.refresh_cron';
  const beat = t ? `"${t.heartbeatCron}"` : 'shipper.heartbeat_cron';
  return [
    {
      kind: 'enroll',
      method: 'POST',
      path: '/v1/enroll',
      when: 'Before the first events are sent when no device token is stored for this device id, and again when the collector refuses the token (401/403).',
      body: 'JSON; the answer is the device token, kept in the device identity file (identity.json in the state directory, root only).',
      fields: ENROLL_FIELDS,
      headers: ENROLL_HEADERS,
    },
    {
      kind: 'events',
      method: 'POST',
      path: '/v1/events',
      when: `While events are queued: ${interval}, at once for a block, once more at a clean stop (at most ${STOP_SEND_BUDGET_MS / 1000} s), retried with backoff until acknowledged. Besides the events of what happened, an agent.heartbeat is queued on the schedule ${beat}.`,
      body: 'gzip NDJSON, one event per line; every field of every event is listed under FIELDS.',
      fields: [],
      headers: EVENTS_HEADERS,
    },
    {
      kind: 'policy',
      method: 'GET',
      path: '/v1/policy',
      when: `At start, ${policyCron} plus up to policy.refresh_jitter_s of random delay, and on SIGHUP or \`guardctl policy reload\`. Sent to policy.url instead when that is set.`,
      body: 'none (the answer is the signed ban list).',
      fields: [],
      headers: POLICY_HEADERS,
    },
    {
      kind: 'policy',
      method: 'GET',
      path: '/v1/policy/shadow',
      when: "Right after every GET /v1/policy, when the policy URL is a collector's …/v1/policy: the shadow candidate (evaluated, never acted on; 204 = none).",
      body: 'none (the answer is the signed shadow ban list, or nothing).',
      fields: [],
      headers: POLICY_HEADERS,
    },
  ];
}

/** One thing guard-collector keeps about each device (its `devices` record). */
export interface CollectorKept {
  readonly column: string;
  readonly contentClass: ContentClass;
  readonly personal: boolean;
  readonly description: string;
}

function kept(column: string, contentClass: ContentClass, description: string): CollectorKept {
  return { column, contentClass, personal: isPersonal(contentClass), description };
}

/**
 * What guard-collector keeps per device, column by column (test/shipping/agent-requests.test.ts
 * compares it with the collector's real `devices` table), besides every event as received.
 */
export const COLLECTOR_DEVICE_RECORD: readonly CollectorKept[] = Object.freeze([
  kept('id', 'machine_id', 'The device id.'),
  kept('token_hash', 'hash', 'SHA-256 of the current device token (the token itself is not stored).'),
  kept('hostname', 'hostname', 'Host name sent at the last enroll.'),
  kept('os', 'os', 'Operating system and release sent at the last enroll.'),
  kept('agent_version', 'os', 'guardd version (from the last enroll or the newest events).'),
  kept('enrolled_at', 'time', 'When the device last enrolled.'),
  kept(
    'last_seen_at',
    'time',
    'When the collector last received a request from it (silent devices are flagged).',
  ),
  kept(
    'enrollment',
    'count',
    'How many times this device id enrolled (each re-enrollment replaces the token).',
  ),
  kept('policy_version', 'count', 'Policy version in force, from its newest policy/heartbeat event.'),
  kept('policy_seq', 'count', 'seq of the event policy_version came from.'),
  kept('coverage', 'object', "Its newest heartbeat's exec_events and exec_deny counters."),
  kept('coverage_seq', 'count', 'seq of the heartbeat coverage came from.'),
  kept(
    'stopped_at',
    'time',
    'When guardd last stopped cleanly (its agent.stopped), while nothing newer arrived.',
  ),
  kept(
    'tags',
    'id',
    "Its newest heartbeat's device tags (the device.tags setting), for the console's filter.",
  ),
  kept('outbox_depth', 'count', 'Events waiting in its outbox, from its newest heartbeat.'),
  kept('dropped_total', 'count', 'Events its outbox ever dropped, from its newest heartbeat.'),
  kept('policy_state', 'enum', 'ok, stale or rejected: from its newest heartbeat and policy events.'),
  kept('policy_error', 'text', 'The reason of its newest policy.rejected while it is in state rejected.'),
  kept('policy_state_seq', 'count', 'seq of the event policy_state came from.'),
]);

/** What the collector keeps besides the device record. */
export const COLLECTOR_KEEPS_EVENTS =
  "Every event exactly as received (with the time it arrived), for as long as its operator configured retention, and forwarded to the log pipeline it is configured with (NDJSON file, Splunk HEC). Its own log records each enrollment with the device id and host name. The machine's IP address is seen with every request and held in memory only, for the per-address enroll limits.";
