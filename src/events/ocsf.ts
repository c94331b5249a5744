/**
 * Owns mapping toolguard events v1 to OCSF 1.8.0 (Open Cybersecurity Schema Framework) for the
 * collector's forwarders, so SIEMs that speak OCSF ingest them without a custom parser. Every
 * mapped event validates against the released 1.8.0 schema (test/helpers/ocsf-validator.ts):
 * only attributes the class defines, the profiles it uses declared in `metadata.profiles`,
 * required attributes always present, enum names matching their ids.
 *
 * The table of classes is `OCSF_MAPPING` below (docs/events.md and docs/collector.md show it).
 * `metadata.uid` is the toolguard event id (also in `metadata.original_event_uid`): unique per
 * device, so a SIEM de-duplicates at-least-once delivery on `device.uid` + `metadata.uid`, the same
 * pair as `device_id` + `id` of the raw format. `metadata.event_code` is the toolguard type.
 * What guardd did is `action_id` / `disposition_id` (Security Control profile) and, for the
 * remediation classes, `status_id`. `unmapped.toolguard` holds only the few fields OCSF has no
 * attribute for (match criterion, mode, raw outcome, package identity, agent counters), each
 * bounded by the event schema; the original event is not copied.
 *
 * Pure and total: any schema-valid event maps; unexpected shapes degrade to defaults, never throw.
 */

import { baseName, int, num, type Obj, obj, str, text } from './event-fields.js';
import type { AgentEvent } from './event-types.js';

/** The OCSF schema version the mapping follows. */
export const OCSF_VERSION = '1.8.0';

interface ClassDef {
  readonly uid: number;
  readonly name: string;
  readonly category_uid: number;
  readonly category_name: string;
  /** activity id → caption, as the schema names them. */
  readonly activities: Readonly<Record<number, string>>;
}

const CLASSES = {
  process: {
    uid: 1007,
    name: 'Process Activity',
    category_uid: 1,
    category_name: 'System Activity',
    activities: { 1: 'Launch' },
  },
  eventLog: {
    uid: 1008,
    name: 'Event Log Activity',
    category_uid: 1,
    category_name: 'System Activity',
    activities: {},
  },
  detection: {
    uid: 2004,
    name: 'Detection Finding',
    category_uid: 2,
    category_name: 'Findings',
    activities: { 1: 'Create' },
  },
  configChange: {
    uid: 5019,
    name: 'Device Config State Change',
    category_uid: 5,
    category_name: 'Discovery',
    activities: { 1: 'Log' },
  },
  software: {
    uid: 5020,
    name: 'Software Inventory Info',
    category_uid: 5,
    category_name: 'Discovery',
    activities: { 1: 'Log' },
  },
  appLifecycle: {
    uid: 6002,
    name: 'Application Lifecycle',
    category_uid: 6,
    category_name: 'Application Activity',
    activities: { 3: 'Start', 4: 'Stop' },
  },
  fileRemediation: {
    uid: 7002,
    name: 'File Remediation Activity',
    category_uid: 7,
    category_name: 'Remediation',
    activities: { 1: 'Isolate' },
  },
  processRemediation: {
    uid: 7003,
    name: 'Process Remediation Activity',
    category_uid: 7,
    category_name: 'Remediation',
    activities: { 2: 'Evict' },
  },
} as const satisfies Record<string, ClassDef>;

/** One row of the mapping table (docs, `guardctl explain`, and a test that toOcsf agrees). */
export interface OcsfMappingRow {
  readonly types: readonly string[];
  readonly class_uid: number;
  readonly class_name: string;
  /** "Caption (id)", plus a note where it helps. */
  readonly activity: string;
  /** The attributes a SIEM keys on for these types. */
  readonly key_attributes: string;
}

/** The mapping table, for docs/events.md and docs/collector.md (a test checks toOcsf agrees with every row). */
export const OCSF_MAPPING: readonly OcsfMappingRow[] = [
  {
    types: ['process.denied', 'process.warned', 'process.audited'],
    class_uid: 1007,
    class_name: 'Process Activity',
    activity: 'Launch (1)',
    key_attributes:
      '`process` (pid, name, cmd_line, file.path/hashes, user, parent_process, session.terminal), `actor.user`, `policy` (rule), `action_id`/`disposition_id` (denied: Denied/Blocked; warned: Allowed/Alert; audited: Observed/Logged)',
  },
  {
    types: ['process.blocked'],
    class_uid: 7003,
    class_name: 'Process Remediation Activity',
    activity: 'Evict (2): the process tree was killed',
    key_attributes:
      '`process` (as above), `command_uid` (event id), `status_id` (Success when killed, Failure/Does Not Exist/Unsupported otherwise), `policy`, `action_id`/`disposition_id` (Denied/Blocked when killed)',
  },
  {
    types: ['package.quarantined', 'path.quarantined'],
    class_uid: 7002,
    class_name: 'File Remediation Activity',
    activity: 'Isolate (1): moved to quarantine',
    key_attributes:
      '`file` (path, name, type Folder/Regular File, owner), `command_uid` (quarantine id), `status_id`, `policy`, `action_id`/`disposition_id` (Denied/Quarantined), `unmapped.toolguard.package` (name, version, ecosystem, manager)',
  },
  {
    types: ['package.warned', 'package.audited'],
    class_uid: 5020,
    class_name: 'Software Inventory Info',
    activity: 'Log (1)',
    key_attributes:
      '`sbom.package` (name, version, purl, package_manager), `actor.user` (owner), `policy`, `action_id`/`disposition_id`',
  },
  {
    types: ['path.warned', 'path.audited'],
    class_uid: 2004,
    class_name: 'Detection Finding',
    activity: 'Create (1)',
    key_attributes:
      '`evidences[0].file` (path, name, owner), `finding_info` (uid = event id, title), `policy`, `action_id`/`disposition_id`',
  },
  {
    types: ['agent.tamper'],
    class_uid: 2004,
    class_name: 'Detection Finding',
    activity: 'Create (1)',
    key_attributes: '`finding_info` (uid = event id, title with the reason, desc = detail), `is_alert`',
  },
  {
    types: ['policy.applied', 'policy.rejected', 'policy.stale'],
    class_uid: 5019,
    class_name: 'Device Config State Change',
    activity: 'Log (1)',
    key_attributes:
      '`policy` (the ban list: version, is_applied, data.sha256/source), `status_id` (applied: Success; rejected: Failure with `status_code` = GUARD_POLICY_* code; stale: Other)',
  },
  {
    types: ['policy.shadow_match'],
    class_uid: 2004,
    class_name: 'Detection Finding',
    activity: 'Create (1)',
    key_attributes:
      '`finding_info` (uid = event id, title: what the shadow would do), `evidences[0].process` or `evidences[0].file` (the subject, as in the enforced classes), `policy` (the shadow rule, version = shadow version), `action_id`/`disposition_id` Observed/Detected (nothing was done), `unmapped.toolguard` (would, mode, enforced decision)',
  },
  {
    types: ['agent.started'],
    class_uid: 6002,
    class_name: 'Application Lifecycle',
    activity: 'Start (3)',
    key_attributes: '`app` (guardd and its version), `device.os`',
  },
  {
    types: ['agent.stopped'],
    class_uid: 6002,
    class_name: 'Application Lifecycle',
    activity: 'Stop (4)',
    key_attributes: '`app`, `status_detail` (why)',
  },
  {
    types: ['agent.heartbeat'],
    class_uid: 6002,
    class_name: 'Application Lifecycle',
    activity: 'Other (99): Heartbeat',
    key_attributes: '`app`, `unmapped.toolguard` (uptime, policy state, outbox depth, counters)',
  },
  {
    types: ['events.dropped'],
    class_uid: 1008,
    class_name: 'Event Log Activity',
    activity: 'Other (99): Drop',
    key_attributes:
      '`log_name` (the agent outbox), `status_code` (reason), `start_time`/`end_time` (first/last dropped), `unmapped.toolguard` (dropped_count, first_seq, last_seq)',
  },
];

/** OCSF_MAPPING as Markdown table lines (docs/events.md via guardctl explain, and docs/collector.md). */
export function ocsfMappingTable(): string[] {
  return [
    '| toolguard types | OCSF class | activity | key attributes |',
    '|---|---|---|---|',
    ...OCSF_MAPPING.map(
      (m) =>
        `| ${m.types.map((t) => `\`${t}\``).join(', ')} | ${m.class_name} (${m.class_uid}) | ${m.activity} | ${m.key_attributes} |`,
    ),
  ];
}

const SEVERITY = { 1: 'Informational', 2: 'Low', 3: 'Medium', 4: 'High' } as const;
type Severity = keyof typeof SEVERITY;
const ACTION = { 1: 'Allowed', 2: 'Denied', 3: 'Observed' } as const;
type ActionId = keyof typeof ACTION;
const DISPOSITION = {
  1: 'Allowed',
  2: 'Blocked',
  3: 'Quarantined',
  15: 'Detected',
  16: 'No Action',
  17: 'Logged',
  19: 'Alert',
  27: 'Error',
} as const;
type DispositionId = keyof typeof DISPOSITION;
/** status_id of the remediation classes (the base classes know 0, 1, 2, 99 only). */
const REMEDIATION_STATUS = { 1: 'Success', 2: 'Failure', 3: 'Does Not Exist', 5: 'Unsupported' } as const;
type RemediationStatus = keyof typeof REMEDIATION_STATUS;
const STATUS = { 1: 'Success', 2: 'Failure' } as const;
/** os.type_id by node's process.platform. */
const OS_TYPE: Readonly<Record<string, { id: number; caption: string }>> = {
  linux: { id: 200, caption: 'Linux' },
  darwin: { id: 300, caption: 'macOS' },
  win32: { id: 100, caption: 'Windows' },
};
/** Observable type ids of the attributes the mapping names (dictionary `observable` annotations). */
const OBSERVABLE = {
  hostname: 1,
  username: 4,
  fileName: 7,
  fileHash: 8,
  processName: 9,
  commandLine: 13,
  userUid: 31,
  filePath: 45,
} as const;
const OBSERVABLE_NAME: Readonly<Record<number, string>> = {
  1: 'Hostname',
  4: 'User Name',
  7: 'File Name',
  8: 'Hash',
  9: 'Process Name',
  13: 'Command Line',
  31: 'User Object: uid',
  45: 'File Path',
};

const PROFILE_HOST = 'host';
const PROFILE_SECURITY_CONTROL = 'security_control';

function dropNulls(o: Obj): Obj {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined));
}
function epochMs(v: unknown): number | null {
  const ms = Date.parse(String(v ?? ''));
  return Number.isNaN(ms) ? null : ms;
}

/** OCSF enum pairs: `{ x_id: 3, x: 'Caption' }`. */
function pair<K extends number>(field: string, id: K, captions: Readonly<Record<K, string>>): Obj {
  return { [`${field}_id`]: id, [field]: captions[id] };
}

/** The owner / acting user: `uid` always (a number in toolguard), `name` when the uid has one. */
function user(e: Obj): Obj | null {
  const uid = int(e.uid);
  const name = text(e.user);
  if (uid === null && name === null) return null;
  return dropNulls({ uid: uid === null ? null : String(uid), name });
}

/** What guardd did, as Security Control action / disposition plus a severity. */
interface Enforcement {
  readonly action: ActionId;
  readonly disposition: DispositionId;
  readonly severity: Severity;
  /** The action happened as intended (killed, quarantined, denied). */
  readonly done: boolean;
}

function enforcementOf(verb: string, taken: string | null): Enforcement {
  if (taken === 'killed' || taken === 'denied') return { action: 2, disposition: 2, severity: 3, done: true };
  if (taken === 'quarantined') return { action: 2, disposition: 3, severity: 3, done: true };
  // install_reverted: the package manager removed the package itself (its install script was
  // stopped): under a block the install was blocked and its leftover links removed, nothing was
  // isolated; under warn/audit (monitor mode) it is only logged.
  if (taken === 'install_reverted')
    return verb === 'quarantined'
      ? { action: 2, disposition: 2, severity: 3, done: true }
      : { action: 3, disposition: 17, severity: 1, done: false };
  if (taken === 'failed') return { action: 3, disposition: 27, severity: 4, done: false };
  if (taken === 'skipped') return { action: 3, disposition: 16, severity: 3, done: false };
  if (taken === 'excepted') return { action: 1, disposition: 1, severity: 1, done: false };
  if (taken === 'warned' || taken === 'would_block')
    return { action: 1, disposition: 19, severity: 2, done: false };
  if (taken === 'warn_suppressed') return { action: 1, disposition: 15, severity: 2, done: false };
  if (verb === 'blocked' || verb === 'quarantined' || verb === 'denied')
    return { action: 3, disposition: 15, severity: 4, done: false };
  return { action: 3, disposition: 17, severity: 1, done: false };
}

/** status_id of a remediation from its outcome. */
function remediationStatus(taken: string | null, error: string | null): RemediationStatus {
  if (taken === 'killed' || taken === 'quarantined' || taken === 'install_reverted') return 1;
  if (taken === 'skipped')
    return error === 'protected_process' ? 5 : error === null || /exited|gone|identity/.test(error) ? 3 : 2;
  return 2;
}

/** The matched rule as the OCSF policy object: `uid` is always a rule id, `version` the ban list's. */
function rulePolicy(e: Obj): Obj | null {
  const rule = obj(e.rule);
  const p = dropNulls({
    uid: text(rule.id),
    name: text(rule.name),
    version: int(e.policy_version) === null ? null : String(e.policy_version),
  });
  return p.uid || p.name ? p : null;
}

/** Fields of an enforcement event that OCSF has no attribute for (all bounded by the event schema). */
function enforcementExtras(e: Obj): Obj {
  const outcome = obj(e.outcome);
  const details = obj(outcome.details);
  const notified = obj(details.notified);
  return dropNulls({
    reason: str(e.reason),
    mode: str(e.mode),
    rule_action: str(obj(e.rule).action),
    action_taken: str(outcome.action_taken),
    latency_ms: num(outcome.latency_ms),
    killed_count: Array.isArray(details.killed) ? details.killed.length : null,
    since_exec_ms: num(details.since_exec_ms),
    links_removed_count: Array.isArray(details.links_removed)
      ? details.links_removed.length
      : int(details.links_removed),
    notified: Object.keys(notified).length ? notified : null,
    scope: str(details.scope),
    refused: str(details.refused),
    restored: typeof details.restored === 'boolean' ? details.restored : null,
  });
}

function observable(name: string, typeId: number, value: unknown): Obj | null {
  if (value === null || value === undefined || value === '') return null;
  return { name, type_id: typeId, type: OBSERVABLE_NAME[typeId], value: String(value) };
}

/** The process object of process.* events. */
function processOf(e: Obj): Obj {
  const exe = text(e.exe);
  const sha = str(e.sha256);
  const pid = int(e.pid);
  const start = num(e.start_time);
  return dropNulls({
    pid,
    // guardd's identity of a process: pid + start time (Linux: clock ticks since boot)
    uid: pid !== null && start !== null ? `${pid}:${start}` : null,
    name: text(e.name),
    cmd_line: Array.isArray(e.argv) ? e.argv.map(String).join(' ') : null,
    user: user(e),
    parent_process: int(e.ppid) === null ? null : { pid: int(e.ppid) },
    session: text(e.tty) ? { terminal: text(e.tty) } : null,
    file: exe
      ? dropNulls({
          path: exe,
          name: baseName(exe),
          ...pair('type', 1, { 1: 'Regular File' }),
          hashes: sha ? [{ algorithm_id: 3, algorithm: 'SHA-256', value: sha }] : null,
        })
      : null,
  });
}

function processObservables(p: Obj, prefix: string): (Obj | null)[] {
  const file = obj(p.file);
  const hashes = Array.isArray(file.hashes) ? (file.hashes as Obj[]) : [];
  return [
    observable(`${prefix}.name`, OBSERVABLE.processName, p.name),
    observable(`${prefix}.cmd_line`, OBSERVABLE.commandLine, p.cmd_line),
    observable(`${prefix}.file.path`, OBSERVABLE.filePath, file.path),
    observable(`${prefix}.file.hashes.value`, OBSERVABLE.fileHash, hashes[0]?.value),
    observable(`${prefix}.user.name`, OBSERVABLE.username, obj(p.user).name),
  ];
}

/** The file object of package.* / path.* events (the package directory, or the matched path). */
function fileOf(path: string | null, isDirectory: boolean, owner: Obj | null): Obj {
  const p = path ?? '';
  return dropNulls({
    path: path,
    // file.name is required: the last path component (the package directory's own name)
    name: p ? baseName(p) : 'unknown',
    ...(isDirectory ? pair('type', 2, { 2: 'Folder' }) : pair('type', 1, { 1: 'Regular File' })),
    owner,
  });
}

function fileObservables(f: Obj, prefix: string): (Obj | null)[] {
  return [
    observable(`${prefix}.path`, OBSERVABLE.filePath, f.path),
    observable(`${prefix}.name`, OBSERVABLE.fileName, f.name),
    observable(`${prefix}.owner.name`, OBSERVABLE.username, obj(f.owner).name),
  ];
}

/** The npm package of package.* events (OCSF package: name and version are required). */
function packageOf(e: Obj): Obj {
  const p = obj(e.package);
  const name = text(p.name) ?? 'unknown';
  const version = text(p.version);
  const ecosystem = text(p.ecosystem);
  return dropNulls({
    name,
    // required by OCSF; toolguard reports null when package.json has no valid version
    version: version ?? 'unknown',
    ...pair('type', 1, { 1: 'Application' }),
    package_manager: text(p.manager),
    purl:
      ecosystem === 'npm' && version
        ? `pkg:npm/${name.startsWith('@') ? `%40${name.slice(1)}` : name}@${encodeURIComponent(version)}`
        : null,
  });
}

interface Mapped {
  readonly cls: ClassDef;
  readonly activity: number;
  /** Caption of activity 99 (Other): the source's own label. */
  readonly otherActivity?: string;
  readonly severity: Severity;
  readonly profiles: readonly string[];
  readonly attrs: Obj;
  readonly observables: readonly (Obj | null)[];
  readonly extras: Obj;
}

/** The Security Control profile's attributes: what guardd did, and the rule that decided. */
function securityControl(e: Obj, enf: Enforcement): Obj {
  const policy = rulePolicy(e);
  return {
    ...pair('action', enf.action, ACTION),
    ...pair('disposition', enf.disposition, DISPOSITION),
    ...(policy ? { policy } : {}),
    is_alert: enf.severity >= 3,
  };
}

function mapProcess(e: Obj, verb: string, device: Obj, taken: string | null): Mapped {
  const enf = enforcementOf(verb, taken);
  const proc = processOf(e);
  const security = securityControl(e, enf);
  const sp = obj(e.script_package);
  const extras = {
    ...enforcementExtras(e),
    ...(Object.keys(sp).length
      ? { script_package: dropNulls({ name: str(sp.name), version: str(sp.version) }) }
      : {}),
  };
  if (verb === 'blocked') {
    const error = str(obj(e.outcome).error);
    return {
      cls: CLASSES.processRemediation,
      activity: 2,
      severity: enf.severity,
      profiles: [PROFILE_HOST, PROFILE_SECURITY_CONTROL],
      attrs: {
        device,
        process: proc,
        command_uid: str(e.id) ?? 'unknown',
        ...pair('status', remediationStatus(taken, error), REMEDIATION_STATUS),
        ...(error ? { status_detail: error } : {}),
        ...security,
      },
      observables: processObservables(proc, 'process'),
      extras,
    };
  }
  const u = user(e);
  // A refused open (a banned package's marked file) leaves the launch itself done.
  const denied = verb === 'denied' && str(obj(obj(e.outcome).details).refused) !== 'open';
  const repeats = int(obj(obj(e.outcome).details).repeats);
  return {
    cls: CLASSES.process,
    activity: 1,
    severity: enf.severity,
    profiles: [PROFILE_SECURITY_CONTROL],
    attrs: {
      device,
      actor: u ? { user: u } : { app_name: 'unknown' },
      process: proc,
      // the launch itself: refused before it ran (denied), or it went ahead
      ...pair('status', denied && enf.done ? 2 : 1, STATUS),
      ...security,
      // a folded burst of identical refusals: OCSF's own aggregation count
      ...(repeats !== null ? { count: repeats } : {}),
    },
    observables: [
      ...processObservables(proc, 'process'),
      observable('actor.user.uid', OBSERVABLE.userUid, u?.uid),
    ],
    extras,
  };
}

function mapInstall(e: Obj, family: string, verb: string, device: Obj, taken: string | null): Mapped {
  const enf = enforcementOf(verb, taken);
  const owner = user(e);
  const security = securityControl(e, enf);
  const p = obj(e.package);
  const isPackage = family === 'package';
  const extras = {
    ...enforcementExtras(e),
    ...(isPackage
      ? {
          package: dropNulls({
            ecosystem: str(p.ecosystem),
            name: str(p.name),
            version: str(p.version),
            manager: str(p.manager),
          }),
        }
      : {}),
  };
  const file = fileOf(isPackage ? text(p.path) : text(e.path), isPackage || e.is_directory === true, owner);
  if (verb === 'quarantined') {
    const outcome = obj(e.outcome);
    const error = str(outcome.error);
    return {
      cls: CLASSES.fileRemediation,
      activity: 1,
      severity: enf.severity,
      profiles: [PROFILE_HOST, PROFILE_SECURITY_CONTROL],
      attrs: {
        device,
        file,
        // the quarantine entry id is the handle `guardctl quarantine restore` takes
        command_uid: text(obj(outcome.details).quarantine_id) ?? str(e.id) ?? 'unknown',
        ...pair('status', remediationStatus(taken, error), REMEDIATION_STATUS),
        ...(error ? { status_detail: error } : {}),
        ...security,
      },
      observables: fileObservables(file, 'file'),
      extras,
    };
  }
  if (isPackage) {
    const pkg = packageOf(e);
    return {
      cls: CLASSES.software,
      activity: 1,
      severity: enf.severity,
      profiles: [PROFILE_SECURITY_CONTROL],
      attrs: {
        device,
        ...(owner ? { actor: { user: owner } } : {}),
        // one package, its components not inventoried
        sbom: { package: pkg, software_components: [] },
        ...security,
      },
      observables: [observable('actor.user.name', OBSERVABLE.username, owner?.name)],
      extras: { ...extras, path: text(p.path) },
    };
  }
  const rule = obj(e.rule);
  return {
    cls: CLASSES.detection,
    activity: 1,
    severity: enf.severity,
    profiles: [PROFILE_SECURITY_CONTROL],
    attrs: {
      device,
      finding_info: dropNulls({
        uid: str(e.id) ?? 'unknown',
        title: `Banned artifact present: ${text(rule.name) ?? text(rule.id) ?? 'unknown rule'}`,
        types: ['toolguard policy path match'],
      }),
      evidences: [{ file }],
      ...pair('status', 1, { 1: 'New' }),
      ...security,
    },
    observables: fileObservables(file, 'evidences.file'),
    extras,
  };
}

/** A shadow policy's would-match: a finding about the subject; nothing was done (docs/policy.md). */
function mapShadowMatch(e: Obj, device: Obj): Mapped {
  const rule = obj(e.rule);
  const enforced = obj(e.enforced);
  const would = str(e.would) ?? 'unknown';
  const isProcess = e.subject_kind === 'process';
  const pkg = obj(e.package);
  const evidence = isProcess
    ? { process: processOf(e) }
    : {
        file: fileOf(
          e.subject_kind === 'package' ? text(pkg.path) : text(e.path),
          e.subject_kind === 'package' || e.is_directory === true,
          user(e),
        ),
      };
  const policy = rulePolicy({ ...e, policy_version: e.shadow_version });
  return {
    cls: CLASSES.detection,
    activity: 1,
    severity: would === 'block' ? 2 : 1,
    profiles: [PROFILE_SECURITY_CONTROL],
    attrs: {
      device,
      finding_info: dropNulls({
        uid: str(e.id) ?? 'unknown',
        title: `Shadow policy v${String(int(e.shadow_version) ?? '?')} would ${would}: ${text(rule.name) ?? text(rule.id) ?? 'unknown rule'}`,
        types: ['toolguard shadow policy match'],
      }),
      evidences: [evidence],
      ...pair('status', 1, { 1: 'New' }),
      ...pair('action', 3, ACTION),
      ...pair('disposition', 15, DISPOSITION),
      ...(policy ? { policy } : {}),
      is_alert: false,
    },
    observables: isProcess
      ? processObservables(evidence.process as Obj, 'evidences.process')
      : fileObservables(evidence.file as Obj, 'evidences.file'),
    extras: dropNulls({
      shadow_version: int(e.shadow_version),
      would,
      mode: str(e.mode),
      reason: str(e.reason),
      rule_action: str(rule.action),
      subject_kind: str(e.subject_kind),
      enforced: dropNulls({
        act: str(enforced.act),
        rule_id: str(enforced.rule_id),
        policy_version: int(enforced.policy_version),
      }),
      package:
        e.subject_kind === 'package' ? dropNulls({ name: str(pkg.name), version: str(pkg.version) }) : null,
    }),
  };
}

function mapPolicy(e: Obj, verb: string, device: Obj): Mapped {
  const version = int(e.policy_version);
  const data = dropNulls({
    sha256: str(e.sha256),
    source: str(e.source),
    previous_version: int(e.previous_version),
    expires_at: str(e.expires_at),
    channel: str(e.channel),
  });
  const policy = dropNulls({
    name: e.channel === 'shadow' ? 'toolguard shadow ban list' : 'toolguard ban list',
    version: version === null ? null : String(version),
    is_applied: verb !== 'rejected',
    data: Object.keys(data).length ? data : null,
  });
  const status =
    verb === 'applied'
      ? pair('status', 1, STATUS)
      : verb === 'rejected'
        ? {
            ...pair('status', 2, STATUS),
            ...(str(e.reason) ? { status_code: str(e.reason) } : {}),
            ...(str(e.message) ? { status_detail: str(e.message) } : {}),
          }
        : {
            status_id: 99,
            status: 'Stale',
            ...(str(e.expires_at) ? { status_detail: `expired at ${String(e.expires_at)}` } : {}),
          };
  return {
    cls: CLASSES.configChange,
    activity: 1,
    severity: verb === 'applied' ? 1 : 3,
    profiles: [PROFILE_SECURITY_CONTROL],
    attrs: { device, policy, ...status },
    observables: [],
    extras: {},
  };
}

/** The type's own fields, for events whose content has no OCSF home (heartbeat, future types). */
function ownFields(e: Obj): Obj {
  const { id: _i, time: _t, seq: _s, device_id: _d, hostname: _h, type: _y, agent_version: _a, ...rest } = e;
  return rest;
}

function mapAgent(e: Obj, type: string, verb: string, device: Obj): Mapped {
  const app = dropNulls({ name: 'guardd', vendor_name: 'toolguard', version: text(e.agent_version) });
  const lifecycle = (
    activity: number,
    otherActivity: string | undefined,
    attrs: Obj,
    extras: Obj,
  ): Mapped => ({
    cls: CLASSES.appLifecycle,
    activity,
    ...(otherActivity ? { otherActivity } : {}),
    severity: 1,
    profiles: [PROFILE_HOST],
    attrs: { device, app, ...attrs },
    observables: [],
    extras,
  });
  if (type === 'agent.started') {
    const platform = text(e.platform);
    const os = platform
      ? dropNulls({
          name: platform,
          type_id: OS_TYPE[platform]?.id ?? 99,
          type: OS_TYPE[platform]?.caption ?? platform,
          kernel_release: text(e.os_release),
        })
      : null;
    return lifecycle(
      3,
      undefined,
      { device: dropNulls({ ...device, os }) },
      dropNulls({
        pid: int(e.pid),
        local_mode: typeof e.local_mode === 'boolean' ? e.local_mode : null,
        node_version: str(e.node_version),
        store_recovered: Object.keys(obj(e.store_recovered)).length ? e.store_recovered : null,
      }),
    );
  }
  if (type === 'agent.stopped')
    return lifecycle(4, undefined, str(e.reason) ? { status_detail: str(e.reason) } : {}, {});
  if (type === 'agent.tamper')
    return {
      cls: CLASSES.detection,
      activity: 1,
      severity: 4,
      profiles: [],
      attrs: {
        device,
        finding_info: dropNulls({
          uid: str(e.id) ?? 'unknown',
          title: `toolguard tamper: ${str(e.reason) ?? 'unknown'}`,
          desc: text(e.detail),
          types: ['Tamper'],
        }),
        ...pair('status', 1, { 1: 'New' }),
        is_alert: true,
      },
      observables: [],
      extras: dropNulls({ reason: str(e.reason) }),
    };
  if (type === 'events.dropped')
    return {
      cls: CLASSES.eventLog,
      activity: 99,
      otherActivity: 'Drop',
      severity: 3,
      profiles: [],
      attrs: dropNulls({
        device,
        actor: { app_name: 'guardd' },
        log_name: 'toolguard outbox',
        log_provider: 'guardd',
        status_code: str(e.reason),
        start_time: epochMs(e.first_time),
        end_time: epochMs(e.last_time),
      }),
      observables: [],
      extras: dropNulls({
        dropped_count: int(e.count),
        first_seq: int(e.first_seq),
        last_seq: int(e.last_seq),
      }),
    };
  // heartbeat, and any type newer than this mapping: lifecycle "Other", its fields kept
  return lifecycle(99, verb === 'heartbeat' ? 'Heartbeat' : type || 'unknown', {}, ownFields(e));
}

/** Maps one toolguard event to an OCSF 1.8.0 event object. */
export function toOcsf(event: AgentEvent | Obj): Obj {
  const e = event as Obj;
  const type = String(e.type ?? '');
  const [family = '', verb = ''] = type.split('.');
  const taken = str(obj(e.outcome).action_taken);
  const device = dropNulls({
    uid: text(e.device_id),
    hostname: text(e.hostname),
    ...pair('type', 0, { 0: 'Unknown' }),
  });
  const m =
    family === 'process'
      ? mapProcess(e, verb, device, taken)
      : family === 'package' || family === 'path'
        ? mapInstall(e, family, verb, device, taken)
        : type === 'policy.shadow_match'
          ? mapShadowMatch(e, device)
          : family === 'policy'
            ? mapPolicy(e, verb, device)
            : mapAgent(e, type, verb, device);
  const activityName =
    m.activity === 99
      ? (m.otherActivity ?? 'Other')
      : (m.cls.activities as Record<number, string>)[m.activity];
  const observables = [
    observable('device.hostname', OBSERVABLE.hostname, device.hostname),
    ...m.observables,
  ].filter((o): o is Obj => o !== null);
  const time = epochMs(e.time);
  return {
    class_uid: m.cls.uid,
    class_name: m.cls.name,
    category_uid: m.cls.category_uid,
    category_name: m.cls.category_name,
    activity_id: m.activity,
    activity_name: activityName,
    type_uid: m.cls.uid * 100 + m.activity,
    type_name: `${m.cls.name}: ${m.activity === 99 ? 'Other' : activityName}`,
    ...pair('severity', m.severity, SEVERITY),
    time: time ?? 0,
    // e.g. "process.blocked: Claude Code"
    message: text(obj(e.rule).name) ? `${type}: ${String(obj(e.rule).name)}` : type || 'unknown',
    metadata: dropNulls({
      version: OCSF_VERSION,
      uid: str(e.id),
      original_event_uid: str(e.id),
      event_code: type || null,
      sequence: int(e.seq),
      log_name: 'toolguard',
      original_time: str(e.time),
      product: dropNulls({ name: 'toolguard', vendor_name: 'toolguard', version: text(e.agent_version) }),
      profiles: m.profiles.length ? [...m.profiles] : null,
    }),
    ...m.attrs,
    ...(observables.length ? { observables } : {}),
    ...(Object.keys(m.extras).length ? { unmapped: { toolguard: m.extras } } : {}),
  };
}
