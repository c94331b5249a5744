/**
 * Owns mapping toolguard events v1 to the Elastic Common Schema (ECS 9.4.0) for the collector's
 * forwarders, so Elastic (and the SIEMs that read ECS) ingest them without a custom pipeline.
 * Every mapped event validates against the field definitions of the `@elastic/ecs` package
 * (test/helpers/ecs-validator.ts): only fields ECS defines, values of their types, and
 * `event.kind` / `event.category` / `event.type` / `event.outcome` from their allowed values, each
 * `event.type` one its categories expect.
 *
 * The table of what each type becomes is `ECS_MAPPING` below (docs/collector.md shows it).
 * `event.id` is the toolguard event id: unique per device, so a SIEM de-duplicates at-least-once
 * delivery on `host.id` + `event.id`, the same pair as `device_id` + `id` of the raw format and
 * `device.uid` + `metadata.uid` of OCSF. `event.action` is the toolguard type. Facts ECS has no
 * field for (match criterion, mode, raw outcome, agent counters) go to the custom `toolguard.*`
 * object, as ECS asks of custom fields; each is bounded by the event schema.
 *
 * Pure and total: any schema-valid event maps; unexpected shapes degrade to defaults, never throw.
 */

import { baseName, int, num, type Obj, obj, str, text } from './event-fields.js';
import type { AgentEvent } from './event-types.js';

/** The ECS release the mapping follows (the `@elastic/ecs` package version the tests validate with). */
export const ECS_VERSION = '9.4.0';

/** One row of the mapping table (docs, and a test that toEcs agrees). */
export interface EcsMappingRow {
  readonly types: readonly string[];
  readonly kind: string;
  readonly category: readonly string[];
  /** event.type when the action happened as intended (killed, denied, quarantined, …). */
  readonly type: readonly string[];
  /** The fields a SIEM keys on for these types. */
  readonly key_fields: string;
}

/** The mapping table, for docs/collector.md (a test checks toEcs agrees with every row). */
export const ECS_MAPPING: readonly EcsMappingRow[] = [
  {
    types: ['process.blocked'],
    kind: 'alert',
    category: ['process', 'intrusion_detection'],
    type: ['end', 'denied'],
    key_fields:
      '`process` (pid, name, executable, args, command_line, hash.sha256, parent.pid, user, entity_id), `user`, `rule`, `event.outcome` (killed: success; failed: failure; skipped: unknown, type `info`)',
  },
  {
    types: ['process.denied'],
    kind: 'alert',
    category: ['process', 'intrusion_detection'],
    type: ['start', 'denied'],
    key_fields: '`process` (as above), `user`, `rule`, `event.outcome`',
  },
  {
    types: ['process.warned'],
    kind: 'event',
    category: ['process', 'intrusion_detection'],
    type: ['start', 'allowed'],
    key_fields: '`process`, `user`, `rule`, `toolguard.mode` (monitor: *would block*)',
  },
  {
    types: ['process.audited'],
    kind: 'event',
    category: ['process'],
    type: ['start', 'info'],
    key_fields: '`process`, `user`, `rule`',
  },
  {
    types: ['package.quarantined'],
    kind: 'alert',
    category: ['package', 'intrusion_detection'],
    type: ['deletion', 'denied'],
    key_fields:
      '`package` (name, version, path, type = ecosystem), `file` (the package directory), `user` (owner), `rule`, `event.outcome` (not quarantined: type `info`)',
  },
  {
    types: ['package.warned'],
    kind: 'event',
    category: ['package', 'intrusion_detection'],
    type: ['info', 'allowed'],
    key_fields: '`package`, `file`, `user`, `rule`',
  },
  {
    types: ['package.audited'],
    kind: 'event',
    category: ['package'],
    type: ['info'],
    key_fields: '`package`, `file`, `user`, `rule`',
  },
  {
    types: ['path.quarantined'],
    kind: 'alert',
    category: ['file', 'intrusion_detection'],
    type: ['deletion', 'denied'],
    key_fields: '`file` (path, name, directory, type dir/file, owner, uid), `rule`, `event.outcome`',
  },
  {
    types: ['path.warned'],
    kind: 'event',
    category: ['file', 'intrusion_detection'],
    type: ['info', 'allowed'],
    key_fields: '`file`, `rule`',
  },
  {
    types: ['path.audited'],
    kind: 'event',
    category: ['file'],
    type: ['info'],
    key_fields: '`file`, `rule`',
  },
  {
    types: ['policy.applied'],
    kind: 'event',
    category: ['configuration'],
    type: ['change'],
    key_fields:
      '`rule.ruleset` / `rule.version` (the ban list and its version), `toolguard.policy` (sha256, source, previous version)',
  },
  {
    types: ['policy.rejected', 'policy.stale'],
    kind: 'event',
    category: ['configuration'],
    type: ['info'],
    key_fields:
      '`event.outcome` failure (rejected) / unknown (stale), `error.code` (GUARD_POLICY_*), `error.message`, `toolguard.policy`',
  },
  {
    types: ['policy.shadow_match'],
    kind: 'event',
    category: ['intrusion_detection'],
    type: ['info'],
    key_fields:
      '`process` or `file`/`package` (the subject, as in the enforced types), `user`, `rule` (the shadow rule; `rule.version` = shadow version, `rule.ruleset` = toolguard shadow ban list), `toolguard.shadow` (would, mode, the enforced decision)',
  },
  {
    types: ['agent.started', 'agent.stopped'],
    kind: 'event',
    category: ['process'],
    type: ['start'],
    key_fields:
      "`agent` (guardd, version), `process` (guardd's pid), `host.os` (started), `event.reason` (stopped: why); stopped has type `end`",
  },
  {
    types: ['agent.heartbeat'],
    kind: 'metric',
    category: ['host'],
    type: ['info'],
    key_fields: '`toolguard.heartbeat` (uptime, policy state, outbox depth, counters)',
  },
  {
    types: ['agent.tamper'],
    kind: 'alert',
    category: ['intrusion_detection'],
    type: ['info'],
    key_fields: '`event.reason` (what was tampered with), `message` (detail)',
  },
  {
    types: ['events.dropped'],
    kind: 'event',
    category: ['host'],
    type: ['info'],
    key_fields:
      '`event.outcome` failure, `event.reason`, `event.start`/`event.end` (first/last dropped), `toolguard.dropped` (count, first_seq, last_seq)',
  },
];

/** ECS_MAPPING as Markdown table lines (docs/collector.md). */
export function ecsMappingTable(): string[] {
  const list = (xs: readonly string[]): string => xs.map((x) => `\`${x}\``).join(', ');
  return [
    '| toolguard types | event.kind | event.category | event.type | key fields |',
    '|---|---|---|---|---|',
    ...ECS_MAPPING.map(
      (m) => `| ${list(m.types)} | \`${m.kind}\` | ${list(m.category)} | ${list(m.type)} | ${m.key_fields} |`,
    ),
  ];
}

/** host.os.type (ECS lists linux, macos, unix, windows, ios, android) by node's process.platform. */
const OS_TYPE: Readonly<Record<string, string>> = {
  linux: 'linux',
  darwin: 'macos',
  win32: 'windows',
  freebsd: 'unix',
  openbsd: 'unix',
  netbsd: 'unix',
  sunos: 'unix',
  aix: 'unix',
  android: 'android',
};

/** `o` without null/undefined members and without empty objects; null when nothing is left. */
function compact(o: Obj): Obj | null {
  const out: Obj = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === null || v === undefined) continue;
    if (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as Obj).length === 0) continue;
    out[k] = v;
  }
  return Object.keys(out).length ? out : null;
}
function dirName(path: string): string | null {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  return i > 0 ? path.slice(0, i) : i === 0 ? path.slice(0, 1) : null;
}
/** An RFC 3339 date string, or null. */
function date(v: unknown): string | null {
  return typeof v === 'string' && !Number.isNaN(Date.parse(v)) ? v : null;
}

/** The owner / acting user: `id` always a string (ECS user.id is a keyword). */
function userOf(e: Obj): Obj | null {
  const uid = int(e.uid);
  return compact({ id: uid === null ? null : String(uid), name: text(e.user) });
}

/** How the action went, as ECS sees it, and whether it happened as intended. */
function outcomeOf(taken: string | null): { outcome: 'success' | 'failure' | 'unknown'; done: boolean } {
  if (taken === 'failed') return { outcome: 'failure', done: false };
  if (taken === 'skipped') return { outcome: 'unknown', done: false };
  if (taken === 'killed' || taken === 'denied' || taken === 'quarantined' || taken === 'install_reverted')
    return { outcome: 'success', done: true };
  return { outcome: 'success', done: false };
}

/** The matched rule: `id`/`name` the rule's, `version` the ban list's. */
function ruleOf(e: Obj): Obj | null {
  const rule = obj(e.rule);
  return compact({
    id: text(rule.id),
    name: text(rule.name),
    version: int(e.policy_version) === null ? null : String(e.policy_version),
    ruleset: 'toolguard ban list',
  });
}

/** Facts of an enforcement event that ECS has no field for. */
function enforcementExtras(e: Obj): Obj | null {
  const outcome = obj(e.outcome);
  const details = obj(outcome.details);
  return compact({
    reason: str(e.reason),
    mode: str(e.mode),
    rule_action: str(obj(e.rule).action),
    action_taken: str(outcome.action_taken),
    latency_ms: num(outcome.latency_ms),
    killed_pids: Array.isArray(details.killed) ? details.killed.filter((p) => int(p) !== null) : null,
    since_exec_ms: num(details.since_exec_ms),
    links_removed: Array.isArray(details.links_removed)
      ? details.links_removed.length
      : int(details.links_removed),
    quarantine_id: str(details.quarantine_id),
    scope: str(details.scope),
    // process.denied: exec (the program never ran) or open (a banned package's marked file)
    refused: str(details.refused),
    // process.denied: a folded burst of identical refusals stands for this many
    repeats: int(details.repeats),
    notified: compact(obj(details.notified)),
  });
}

function processOf(e: Obj): Obj | null {
  const exe = text(e.exe);
  const pid = int(e.pid);
  const start = num(e.start_time);
  const args = Array.isArray(e.argv) ? e.argv.map(String) : null;
  return compact({
    pid,
    name: text(e.name),
    executable: exe,
    args: args?.length ? args : null,
    args_count: args ? args.length : null,
    command_line: args?.length ? args.join(' ') : null,
    // guardd's identity of a process: device + pid + start time (Linux: clock ticks since boot)
    entity_id: pid !== null && start !== null ? `${String(e.device_id ?? '')}:${pid}:${start}` : null,
    parent: int(e.ppid) === null ? null : { pid: int(e.ppid) },
    hash: text(e.sha256) ? { sha256: text(e.sha256) } : null,
    user: userOf(e),
    interactive: e.tty === undefined ? null : text(e.tty) !== null,
  });
}

function fileOf(path: string | null, isDirectory: boolean, e: Obj): Obj | null {
  if (!path) return null;
  const uid = int(e.uid);
  return compact({
    path,
    name: baseName(path),
    directory: dirName(path),
    type: isDirectory ? 'dir' : 'file',
    owner: text(e.user),
    uid: uid === null ? null : String(uid),
  });
}

interface Classified {
  readonly kind: string;
  readonly category: string[];
  readonly type: string[];
  readonly outcome?: 'success' | 'failure' | 'unknown';
  readonly severity: number;
}

/** The row of ECS_MAPPING for `type` (unknown types: a host info event). */
function rowOf(type: string): EcsMappingRow | undefined {
  return ECS_MAPPING.find((m) => m.types.includes(type));
}

/** Maps one toolguard event to an ECS document (nested objects, as Elasticsearch stores it). */
export function toEcs(event: AgentEvent | Obj): Obj {
  const e = event as Obj;
  const type = String(e.type ?? '');
  const [family = '', verb = ''] = type.split('.');
  const taken = str(obj(e.outcome).action_taken);
  const row = rowOf(type);
  const { outcome, done } = outcomeOf(taken);
  let cls: Classified = {
    kind: row?.kind ?? 'event',
    category: [...(row?.category ?? ['host'])],
    type: [...(row?.type ?? ['info'])],
    severity: 1,
  };
  let fields: Obj = {};
  const ruleName = text(obj(e.rule).name);
  let message = ruleName ? `${type}: ${ruleName}` : type || 'unknown';

  if (family === 'process') {
    const error = str(obj(e.outcome).error);
    const enforced = verb === 'blocked' || verb === 'denied';
    cls = {
      ...cls,
      // a kill or deny that did not happen is no longer an ending/refused launch
      type: enforced && !done ? ['info'] : cls.type,
      outcome,
      severity: enforced ? (done ? 3 : 4) : verb === 'warned' ? 2 : 1,
    };
    fields = {
      process: processOf(e),
      user: userOf(e),
      rule: ruleOf(e),
      error: error && outcome !== 'success' ? { message: error } : null,
      toolguard: compact({
        ...enforcementExtras(e),
        script_package: compact({
          name: str(obj(e.script_package).name),
          version: str(obj(e.script_package).version),
          path: str(obj(e.script_package).path),
        }),
        tty: text(e.tty),
      }),
    };
  } else if (family === 'package' || family === 'path') {
    const error = str(obj(e.outcome).error);
    const quarantine = verb === 'quarantined';
    cls = {
      ...cls,
      type: quarantine && !done ? ['info'] : cls.type,
      outcome,
      severity: quarantine ? (done ? 3 : 4) : verb === 'warned' ? 2 : 1,
    };
    const p = obj(e.package);
    const isPackage = family === 'package';
    fields = {
      package: isPackage
        ? compact({
            name: text(p.name),
            version: text(p.version),
            path: text(p.path),
            type: text(p.ecosystem),
          })
        : null,
      file: fileOf(isPackage ? text(p.path) : text(e.path), isPackage || e.is_directory === true, e),
      user: userOf(e),
      rule: ruleOf(e),
      error: error && outcome !== 'success' ? { message: error } : null,
      toolguard: compact({
        ...enforcementExtras(e),
        package: isPackage ? compact({ manager: str(p.manager), root: str(p.root) }) : null,
      }),
    };
  } else if (type === 'policy.shadow_match') {
    const p = obj(e.package);
    const kind = str(e.subject_kind);
    const enforced = obj(e.enforced);
    const version = int(e.shadow_version);
    const rule = obj(e.rule);
    cls = { ...cls, severity: e.would === 'block' ? 2 : 1 };
    fields = {
      process: kind === 'process' ? processOf(e) : null,
      package:
        kind === 'package'
          ? compact({
              name: text(p.name),
              version: text(p.version),
              path: text(p.path),
              type: text(p.ecosystem),
            })
          : null,
      file:
        kind === 'process'
          ? null
          : fileOf(
              kind === 'package' ? text(p.path) : text(e.path),
              kind === 'package' || e.is_directory === true,
              e,
            ),
      user: userOf(e),
      rule: compact({
        id: text(rule.id),
        name: text(rule.name),
        version: version === null ? null : String(version),
        ruleset: 'toolguard shadow ban list',
      }),
      toolguard: compact({
        shadow: compact({
          version,
          would: str(e.would),
          mode: str(e.mode),
          reason: str(e.reason),
          rule_action: str(rule.action),
          enforced: compact({
            act: str(enforced.act),
            rule_id: str(enforced.rule_id),
            policy_version: int(enforced.policy_version),
          }),
        }),
      }),
    };
    message = `policy.shadow_match: v${String(version ?? '?')} would ${str(e.would) ?? '?'}: ${text(rule.name) ?? text(rule.id) ?? 'unknown rule'}`;
  } else if (family === 'policy') {
    const version = int(e.policy_version);
    cls = {
      ...cls,
      outcome: verb === 'applied' ? 'success' : verb === 'rejected' ? 'failure' : 'unknown',
      severity: verb === 'applied' ? 1 : 3,
    };
    fields = {
      rule: compact({ ruleset: 'toolguard ban list', version: version === null ? null : String(version) }),
      error: verb === 'rejected' ? compact({ code: text(e.reason), message: text(e.message) }) : null,
      toolguard: compact({
        policy: compact({
          sha256: str(e.sha256),
          source: str(e.source),
          previous_version: int(e.previous_version),
          expires_at: str(e.expires_at),
          channel: str(e.channel),
        }),
      }),
    };
    if (verb === 'stale' && str(e.expires_at)) message = `policy.stale: expired at ${String(e.expires_at)}`;
  } else if (type === 'agent.started' || type === 'agent.stopped') {
    const platform = text(e.platform);
    cls = { ...cls, type: type === 'agent.stopped' ? ['end'] : ['start'], outcome: 'success' };
    fields = {
      process: compact({ pid: int(e.pid), name: 'guardd' }),
      host: platform
        ? {
            os: compact({
              platform,
              type: OS_TYPE[platform] ?? null,
              kernel: text(e.os_release),
            }),
          }
        : null,
      event: compact({ reason: text(e.reason) }),
      toolguard: compact({
        local_mode: typeof e.local_mode === 'boolean' ? e.local_mode : null,
        node_version: str(e.node_version),
        store_recovered: compact(obj(e.store_recovered)),
      }),
    };
  } else if (type === 'agent.tamper') {
    cls = { ...cls, severity: 4 };
    fields = { event: compact({ reason: text(e.reason) }) };
    message = `toolguard tamper: ${str(e.reason) ?? 'unknown'}${text(e.detail) ? ` (${String(e.detail)})` : ''}`;
  } else if (type === 'events.dropped') {
    cls = { ...cls, outcome: 'failure', severity: 3 };
    fields = {
      event: compact({ reason: text(e.reason), start: date(e.first_time), end: date(e.last_time) }),
      toolguard: compact({
        dropped: compact({ count: int(e.count), first_seq: int(e.first_seq), last_seq: int(e.last_seq) }),
      }),
    };
  } else {
    // heartbeat, and any type newer than this mapping: its own fields kept under toolguard.*
    const {
      id: _i,
      time: _t,
      seq: _s,
      device_id: _d,
      hostname: _h,
      type: _y,
      agent_version: _a,
      ...rest
    } = e;
    fields = { toolguard: compact({ [verb === 'heartbeat' ? 'heartbeat' : 'fields']: compact(rest) }) };
  }

  const own = obj(fields.event);
  const host = obj(fields.host);
  const { event: _e, host: _h, ...rest } = fields;
  return compact({
    '@timestamp': date(e.time) ?? new Date(0).toISOString(),
    ecs: { version: ECS_VERSION },
    message,
    event: compact({
      id: str(e.id),
      kind: cls.kind,
      category: cls.category,
      type: cls.type,
      outcome: cls.outcome ?? null,
      action: type || null,
      severity: cls.severity,
      sequence: int(e.seq),
      module: 'toolguard',
      dataset: 'toolguard.events',
      provider: 'guardd',
      ...own,
    }),
    host: compact({ id: text(e.device_id), name: text(e.hostname), hostname: text(e.hostname), ...host }),
    agent: compact({ type: 'guardd', name: 'guardd', version: text(e.agent_version), id: text(e.device_id) }),
    ...rest,
  }) as Obj;
}
