/**
 * `guardctl explain`: every field guardd collects, where it is kept on this machine, what is sent
 * to which URL, and for how long each copy is kept — generated from the event schema
 * (src/events/event.schema.json) that every event is validated against before it is stored or
 * sent, so the explanation cannot drift from the wire. Runs offline from the schema and the config
 * file; when guardd answers, the collector URL it actually uses is shown too.
 *
 * docs/data-collected.md and docs/events.md are rendered by the same functions (scripts/gen-docs.js).
 */
import { join } from 'node:path';
import { loadConfig } from '../../config/load-config.js';
import type { Config } from '../../config/settings.js';
import type { DaemonStatus } from '../../control/status.js';
import { CONTENT_CLASSES } from '../../events/content-class.js';
import {
  COMMON_FIELDS,
  EVENT_FIELDS,
  EVENT_SCHEMA_DESCRIPTION,
  type EventField,
} from '../../events/event-schema.js';
import { EVENT_TYPES } from '../../events/event-types.js';
import { OCSF_VERSION, ocsfMappingTable } from '../../events/ocsf.js';
import {
  type AgentRequest,
  agentRequests,
  COLLECTOR_DEVICE_RECORD,
  COLLECTOR_KEEPS_EVENTS,
  type CollectorKept,
} from '../../shipping/agent-requests.js';
import { IDENTITY_FILE } from '../../store/device-identity.js';
import { DEFAULT_HISTORY_MAX_AGE_MS, historyMaxBytesFor } from '../../store/outbox-store.js';
import type { SentSummary } from '../../store/sent-log.js';
import type { GuardctlCommand } from '../command.js';

/** The state DB file name under paths.state_dir (the daemon's composition root opens this file). */
export const STATE_DB_FILE = 'guardd.db';

/** What is kept where and for how long (the answer of explain, also rendered into the docs). */
export interface Explanation {
  readonly schema: string;
  readonly storage: {
    readonly file: string;
    /** The device identity file (device id and token), kept apart from the DB. */
    readonly identity: string;
    readonly outbox: string;
    readonly history: string;
    readonly set_aside: string;
  };
  readonly sending: {
    readonly collector_url: string | null;
    readonly source: 'daemon' | 'config' | 'none' | 'docs';
    readonly what: string;
    readonly how: string;
  };
  /** Every HTTP request guardd makes (src/shipping/agent-requests.ts). */
  readonly requests: readonly AgentRequest[];
  /** What the collector keeps about this device, and about its events. */
  readonly collector_keeps: { readonly device: readonly CollectorKept[]; readonly events: string };
  /**
   * What this machine sent in the last 24 h, from guardd's own record (null when guardd does not
   * answer: the record is in the root-only state DB).
   */
  readonly sent_last_24h: SentSummary | null;
  readonly not_collected: readonly string[];
  readonly event_types: readonly string[];
  readonly fields: readonly EventField[];
}

const MiB = 1024 * 1024;

function bytes(n: number): string {
  return n >= MiB ? `${Math.round((n / MiB) * 10) / 10} MiB` : `${Math.round(n / 1024)} KiB`;
}

/** Builds the explanation from the schema and a config (and the live collector URL when known). */
export function explain(
  config: Config | null,
  live: { collector_url: string | null; sent?: SentSummary | null } | null,
): Explanation {
  const maxBytes = config?.['outbox.max_bytes'] ?? 64 * MiB;
  const stateDir = config?.['paths.state_dir'] ?? '<paths.state_dir>';
  const days = Math.round(DEFAULT_HISTORY_MAX_AGE_MS / 86_400_000);
  const url = live ? live.collector_url : config ? config['collector.url'] || null : null;
  const source: Explanation['sending']['source'] = live
    ? 'daemon'
    : config
      ? url
        ? 'config'
        : 'none'
      : 'docs';
  return {
    schema: EVENT_SCHEMA_DESCRIPTION,
    storage: {
      file: join(stateDir, STATE_DB_FILE),
      identity: `${join(stateDir, IDENTITY_FILE)} (root only) holds this machine's device id and its collector token, apart from the database so that a lost or damaged database does not make the machine a new device.`,
      outbox: `Every event is first written to the outbox table of this SQLite file (root-only) and stays there until the collector acknowledged it; if the collector cannot be reached, at most ${bytes(maxBytes)} (outbox.max_bytes) are kept and the oldest unsent events are then dropped and counted in one events.dropped event.`,
      history: `Acknowledged events are kept locally for \`guardctl events\` for at most ${days} days and ${bytes(historyMaxBytesFor(maxBytes))}, then deleted.`,
      set_aside: `Events the collector refuses as invalid (or that fail the schema) are never sent again; they are kept locally, visible in \`guardctl events\`, until space is needed.`,
    },
    sending: {
      collector_url: url,
      source,
      what: 'Exactly the fields listed below, nothing else: the schema forbids any other field, and an event that does not match it is set aside instead of sent.',
      how: url
        ? `POST ${url.replace(/\/$/, '')}/v1/events (gzip NDJSON, device token), in batches, with retries until acknowledged. Retention at the collector is set by its operator.`
        : source === 'docs'
          ? 'POST <collector.url>/v1/events (gzip NDJSON, device token), in batches, with retries until acknowledged. Retention at the collector is set by its operator.'
          : 'No collector is configured (collector.url is empty): events stay on this machine.',
    },
    requests: agentRequests(
      config
        ? {
            shipperIntervalMs: config['shipper.interval_ms'],
            policyCron: config['policy.refresh_cron'],
            heartbeatCron: config['shipper.heartbeat_cron'],
          }
        : null,
    ),
    collector_keeps: { device: COLLECTOR_DEVICE_RECORD, events: COLLECTOR_KEEPS_EVENTS },
    sent_last_24h: live?.sent ?? null,
    not_collected: [
      'file contents, source code, environment variables',
      'secrets in command lines (tokens, keys, passwords, credentials in URLs are replaced by [REDACTED] before storage)',
      'processes, packages or files that match no rule of the policy',
    ],
    event_types: [...EVENT_TYPES],
    fields: EVENT_FIELDS,
  };
}

function typesLabel(f: EventField): string {
  if (f.eventTypes.length === EVENT_TYPES.length) return 'all';
  const families = new Map<string, string[]>();
  for (const t of f.eventTypes) {
    const [fam = '', verb = ''] = t.split('.');
    families.set(fam, [...(families.get(fam) ?? []), verb]);
  }
  const all: Record<string, number> = {};
  for (const t of EVENT_TYPES) {
    const fam = t.split('.')[0] ?? '';
    all[fam] = (all[fam] ?? 0) + 1;
  }
  return [...families]
    .map(([fam, verbs]) =>
      verbs.length === all[fam] ? `${fam}.*` : verbs.map((v) => `${fam}.${v}`).join(', '),
    )
    .join(', ');
}

/** The text guardctl prints. */
export function renderExplainText(x: Explanation): string {
  const lines: string[] = [
    'What guardd collects on this machine, where it is kept, and what is sent where.',
    '',
    'WHERE IT IS KEPT',
    `  ${x.storage.file}`,
    `  - ${x.storage.identity}`,
    `  - ${x.storage.outbox}`,
    `  - ${x.storage.history}`,
    `  - ${x.storage.set_aside}`,
    '',
    'WHAT IS SENT, AND WHERE',
    `  collector: ${x.sending.collector_url ?? '(none)'}${x.sending.source === 'daemon' ? ' (as used by the running guardd)' : x.sending.source === 'config' ? ' (from the config file; guardd is not answering)' : ''}`,
    `  - ${x.sending.how}`,
    `  - ${x.sending.what}`,
    '',
    'EVERY REQUEST GUARDD MAKES (* = personal; ! = identifies this machine)',
    ...x.requests.flatMap((r) => [
      `  ${r.method} ${r.path}`,
      `    when: ${r.when}`,
      `    body: ${r.body}`,
      ...r.fields.map((f) => `    ${f.personal ? '*' : ' '} ${f.path.padEnd(22)} ${f.description}`),
      `    headers: ${r.headers.map((h) => `${h.name}${h.identifies ? '!' : ''}${h.personal ? '*' : ''}`).join(', ')}`,
    ]),
    '',
    ...renderSent(x.sent_last_24h),
    '',
    'WHAT THE COLLECTOR KEEPS ABOUT THIS MACHINE',
    ...x.collector_keeps.device.map(
      (k) => `  ${k.personal ? '*' : ' '} ${k.column.padEnd(16)} ${k.description}`,
    ),
    `  - ${x.collector_keeps.events}`,
    '',
    'NEVER COLLECTED',
    ...x.not_collected.map((n) => `  - ${n}`),
    '',
    `FIELDS (* = can identify a person or what they work on; "types" = which events carry the field)`,
  ];
  const width = Math.min(34, Math.max(...x.fields.map((f) => f.path.length)) + 2);
  for (const f of x.fields) {
    lines.push(`  ${(f.personal ? '* ' : '  ') + f.path.padEnd(width)} ${f.type}  [${typesLabel(f)}]`);
    lines.push(`  ${''.padEnd(width + 2)} ${f.description}`);
  }
  return lines.join('\n');
}

/** The "sent in the last 24 h" lines of the text. */
export function renderSent(sent: SentSummary | null): string[] {
  const head = "SENT BY THIS MACHINE IN THE LAST 24 H (guardd's own record)";
  if (!sent) return [head, '  (guardd is not answering; the record is in its state database)'];
  const kinds = Object.entries(sent.requests);
  const types = Object.entries(sent.events);
  if (kinds.length === 0) return [head, `  nothing since ${sent.since}`];
  const total = kinds.reduce((n, [, t]) => n + t.bytes, 0);
  return [
    `${head}, since ${sent.since}: ${bytesText(total)} in ${kinds.reduce((n, [, t]) => n + t.count, 0)} requests`,
    ...kinds.map(
      ([k, t]) =>
        `  ${k.padEnd(22)} ${String(t.count).padStart(6)} requests  ${bytesText(t.bytes).padStart(10)}`,
    ),
    ...types.map(
      ([k, t]) =>
        `    ${k.padEnd(20)} ${String(t.count).padStart(6)} events    ${bytesText(t.bytes).padStart(10)} (uncompressed)`,
    ),
  ];
}

function bytesText(n: number): string {
  return n < 1024 ? `${n} B` : bytes(n);
}

function mdCell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

const GENERATED =
  '<!-- generated by `npm run docs` (scripts/gen-docs.js) from src/events/event.schema.json; do not edit -->';

/** docs/data-collected.md: the same content as `guardctl explain`, with default settings. */
export function renderDataCollectedDoc(): string {
  const x = explain(null, null);
  const lines = [
    GENERATED,
    '# What guardd collects',
    '',
    "`guardctl explain` prints this page for the machine it runs on (with that machine's config and collector URL). Both are generated from the event schema that every event is validated against before it is stored or sent, so they cannot drift from what is on the wire.",
    '',
    '## Where it is kept',
    '',
    `The state database \`${x.storage.file}\` (Linux: \`/var/lib/toolguard/${STATE_DB_FILE}\`), readable by root only.`,
    '',
    `- **Identity**: ${x.storage.identity}`,
    `- **Outbox**: ${x.storage.outbox}`,
    `- **History**: ${x.storage.history}`,
    `- **Set aside**: ${x.storage.set_aside}`,
    '',
    '## What is sent, and where',
    '',
    `- ${x.sending.how}`,
    `- ${x.sending.what}`,
    '',
    '## Every request guardd makes',
    '',
    'Paths are relative to `collector.url`. Personal = the value can identify a person or reveal what they work on; identifies = it tells the collector which machine sent the request.',
    '',
    ...x.requests.flatMap((r) => [
      `### \`${r.method} ${r.path}\``,
      '',
      `- When: ${r.when}`,
      `- Body: ${r.body}`,
      '',
      ...(r.fields.length > 0
        ? [
            '| body field | class | personal | description |',
            '|---|---|---|---|',
            ...r.fields.map(
              (f) =>
                `| \`${f.path}\` | ${f.contentClass} | ${f.personal ? 'yes' : ''} | ${mdCell(f.description)} |`,
            ),
            '',
          ]
        : []),
      '| header | value | class | personal | identifies |',
      '|---|---|---|---|---|',
      ...r.headers.map(
        (h) =>
          `| \`${h.name}\` | ${mdCell(h.value)} | ${h.contentClass} | ${h.personal ? 'yes' : ''} | ${h.identifies ? 'yes' : ''} |`,
      ),
      '',
    ]),
    '## What this machine has sent',
    '',
    "`guardctl explain` also prints what the machine sent in the last 24 hours — requests per kind and their bytes on the wire, events per type and their bytes — from guardd's own record in the state database (table `sent_log`, kept 48 hours), written as each request is answered.",
    '',
    '## What the collector keeps about this machine',
    '',
    '| column | class | personal | description |',
    '|---|---|---|---|',
    ...x.collector_keeps.device.map(
      (k) =>
        `| \`${k.column}\` | ${k.contentClass} | ${k.personal ? 'yes' : ''} | ${mdCell(k.description)} |`,
    ),
    '',
    x.collector_keeps.events,
    '',
    '## Never collected',
    '',
    ...x.not_collected.map((n) => `- ${n}`),
    '',
    '## Fields',
    '',
    'Personal = the field can identify a person or reveal what they work on; it follows from the content class (`x-class` in the schema, src/events/content-class.ts):',
    '',
    ...Object.entries(CONTENT_CLASSES).map(
      ([name, c]) => `- \`${name}\`${c.personal ? ' (personal)' : ''}: ${c.meaning}`,
    ),
    '',
    '| field | type | class | personal | carried by | description |',
    '|---|---|---|---|---|---|',
    ...x.fields.map(
      (f) =>
        `| \`${f.path}\` | ${mdCell(f.type)} | ${f.contentClass} | ${f.personal ? 'yes' : ''} | ${mdCell(typesLabel(f))} | ${mdCell(f.description)} |`,
    ),
    '',
  ];
  return lines.join('\n');
}

/** docs/events.md: the event schema v1, type by type, field by field. */
export function renderEventsDoc(): string {
  const lines = [
    GENERATED,
    '# Events v1',
    '',
    EVENT_SCHEMA_DESCRIPTION,
    '',
    'Schema: [`src/events/event.schema.json`](../src/events/event.schema.json) (JSON Schema 2020-12). The agent validates every event before storing it for sending, the collector validates every event it receives, and the test suite validates every event it emits. OCSF 1.8.0 mapping: `src/events/ocsf.ts` (table at the end).',
    '',
    'Wire format: one JSON object per line (`application/x-ndjson`, gzip), `POST /v1/events`; `id` is the idempotency key, `seq` is per device and strictly increasing (a gap is accounted for by an `events.dropped` event).',
    '',
    '## Common fields (every event)',
    '',
    '| field | type | description |',
    '|---|---|---|',
    ...EVENT_FIELDS.filter((f) => COMMON_FIELDS.includes(f.path)).map(
      (f) => `| \`${f.path}\` | ${mdCell(f.type)} | ${mdCell(f.description)} |`,
    ),
    '',
  ];
  const families = [...new Set(EVENT_TYPES.map((t) => t.split('.')[0] ?? ''))];
  for (const fam of families) {
    const types = EVENT_TYPES.filter((t) => t.startsWith(`${fam}.`));
    // group types that carry exactly the same fields
    const groups = new Map<string, string[]>();
    for (const t of types) {
      const sig = EVENT_FIELDS.filter((f) => f.eventTypes.includes(t) && !COMMON_FIELDS.includes(f.path))
        .map((f) => `${f.path}:${f.description}`)
        .join('|');
      groups.set(sig, [...(groups.get(sig) ?? []), t]);
    }
    for (const group of groups.values()) {
      lines.push(`## ${group.map((t) => `\`${t}\``).join(', ')}`, '');
      lines.push('| field | type | required | description |', '|---|---|---|---|');
      const first = group[0] as (typeof EVENT_TYPES)[number];
      for (const f of EVENT_FIELDS.filter(
        (x) => x.eventTypes.includes(first) && !COMMON_FIELDS.includes(x.path),
      ))
        lines.push(
          `| \`${f.path}\` | ${mdCell(f.type)} | ${f.requiredIn.includes(first) ? 'yes' : ''} | ${mdCell(f.description)} |`,
        );
      lines.push('');
    }
  }
  lines.push(
    `## OCSF mapping (OCSF ${OCSF_VERSION})`,
    '',
    "The collector's forwarders can emit events as OCSF (`src/events/ocsf.ts`), valid against the released schema (the test suite validates every type). `metadata.uid` is the event `id` and `device.uid` the `device_id`: de-duplicate on both, as with every other format. `action_id`/`disposition_id` say what guardd did; `unmapped.toolguard` holds only the few fields OCSF has no attribute for.",
    '',
    ...ocsfMappingTable(),
    '',
  );
  return lines.join('\n');
}

export const explainCommand: GuardctlCommand = {
  name: 'explain',
  summary:
    'Show every field guardd collects, where it is kept, every request it makes, what the collector keeps, and what this machine sent in the last 24 h',
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    let config: Config | null = null;
    try {
      config = loadConfig({ file: ctx.configFile, required: false });
    } catch {
      config = null; // an unreadable config still gets the schema-derived explanation
    }
    let live: { collector_url: string | null; sent: SentSummary | null } | null = null;
    try {
      const s = await ctx.call<DaemonStatus>('status');
      live = { collector_url: s.shipper.collector_url, sent: null };
      // a guardd without this method (older) still gets the rest of the explanation
      live.sent = await ctx.call<SentSummary>('sent.summary').catch(() => null);
    } catch {
      live = null;
    }
    const x = explain(config, live);
    return { data: x, text: renderExplainText(x) };
  },
};
