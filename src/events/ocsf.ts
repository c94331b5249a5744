/**
 * Owns mapping toolguard events v1 to OCSF (Open Cybersecurity Schema Framework, 1.3) for the
 * collector's forwarders, so SIEMs that speak OCSF ingest them without a custom parser:
 *
 * | toolguard            | OCSF class                          | activity                         |
 * |----------------------|-------------------------------------|----------------------------------|
 * | process.*            | Process Activity (1007)             | Launch (1)                       |
 * | package.*            | Software Inventory Info (5020)      | Log (1)                          |
 * | path.*               | File System Activity (1001)         | Rename (5) when moved to quarantine, else Other (99) |
 * | policy.*             | Device Config State Change (5019)   | Log (1)                          |
 * | agent.tamper         | Detection Finding (2004)            | Create (1)                       |
 * | agent.*, events.dropped | Application Lifecycle (6002)     | Start (3) / Stop (4) / Other (99) |
 *
 * `action_id` / `disposition_id` say what guardd did (blocked, quarantined, allowed after a
 * warning, logged). Nothing is lost: the original event rides along in `unmapped.toolguard`.
 * Pure and total: any schema-valid event maps; unexpected shapes degrade to nulls, never throw.
 */
import type { AgentEvent } from './event-types.js';

/** The OCSF schema version the mapping follows. */
export const OCSF_VERSION = '1.3.0';

/** The mapping table, for docs/events.md (a test checks toOcsf agrees with every row). */
export const OCSF_MAPPING: readonly {
  readonly types: readonly string[];
  readonly class_uid: number;
  readonly class_name: string;
  readonly activity: string;
}[] = [
  {
    types: ['process.blocked', 'process.denied', 'process.warned', 'process.audited'],
    class_uid: 1007,
    class_name: 'Process Activity',
    activity: 'Launch (1)',
  },
  {
    types: ['package.quarantined', 'package.warned', 'package.audited'],
    class_uid: 5020,
    class_name: 'Software Inventory Info',
    activity: 'Log (1)',
  },
  {
    types: ['path.quarantined'],
    class_uid: 1001,
    class_name: 'File System Activity',
    activity: 'Rename (5): moved to quarantine',
  },
  {
    types: ['path.warned', 'path.audited'],
    class_uid: 1001,
    class_name: 'File System Activity',
    activity: 'Other (99)',
  },
  {
    types: ['policy.applied', 'policy.rejected', 'policy.stale'],
    class_uid: 5019,
    class_name: 'Device Config State Change',
    activity: 'Log (1)',
  },
  { types: ['agent.tamper'], class_uid: 2004, class_name: 'Detection Finding', activity: 'Create (1)' },
  { types: ['agent.started'], class_uid: 6002, class_name: 'Application Lifecycle', activity: 'Start (3)' },
  { types: ['agent.stopped'], class_uid: 6002, class_name: 'Application Lifecycle', activity: 'Stop (4)' },
  {
    types: ['agent.heartbeat', 'events.dropped'],
    class_uid: 6002,
    class_name: 'Application Lifecycle',
    activity: 'Other (99)',
  },
];

type Obj = Record<string, unknown>;

const SEVERITY = { informational: 1, low: 2, medium: 3, high: 4 } as const;
/** OCSF action_id: 1 Allowed, 2 Denied. */
const ACTION = { allowed: 1, denied: 2 } as const;
/** OCSF disposition_id: 1 Allowed, 2 Blocked, 3 Quarantined, 15 Detected, 17 Logged. */
const DISPOSITION = { allowed: 1, blocked: 2, quarantined: 3, detected: 15, logged: 17 } as const;

function obj(v: unknown): Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {};
}
function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}
function dropNulls(o: Obj): Obj {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined));
}

/** What guardd did, as OCSF action/disposition/severity, from the verb and the outcome. */
function enforcementOf(
  e: Obj,
  verb: string,
): { action_id: number; disposition_id: number; severity_id: number } {
  const taken = str(obj(e.outcome).action_taken);
  // denied: the kernel refused the exec, the program never ran (pre-exec deny).
  if ((verb === 'blocked' && taken === 'killed') || (verb === 'denied' && taken === 'denied'))
    return { action_id: ACTION.denied, disposition_id: DISPOSITION.blocked, severity_id: SEVERITY.medium };
  // install_reverted: the package manager removed it itself (its install script was stopped), so
  // the install was blocked without a quarantine entry.
  if (verb === 'quarantined' && taken === 'install_reverted')
    return { action_id: ACTION.denied, disposition_id: DISPOSITION.blocked, severity_id: SEVERITY.medium };
  if (verb === 'quarantined' && taken === 'quarantined')
    return {
      action_id: ACTION.denied,
      disposition_id: DISPOSITION.quarantined,
      severity_id: SEVERITY.medium,
    };
  if (verb === 'blocked' || verb === 'quarantined' || verb === 'denied')
    // the block failed or was skipped: the thing still runs / is still installed
    return { action_id: ACTION.allowed, disposition_id: DISPOSITION.detected, severity_id: SEVERITY.high };
  if (verb === 'warned')
    return { action_id: ACTION.allowed, disposition_id: DISPOSITION.allowed, severity_id: SEVERITY.low };
  return {
    action_id: ACTION.allowed,
    disposition_id: DISPOSITION.logged,
    severity_id: SEVERITY.informational,
  };
}

function user(e: Obj): Obj {
  return dropNulls({ uid: e.uid !== undefined ? String(e.uid) : null, name: str(e.user) });
}

/** Maps one toolguard event to an OCSF event object. */
export function toOcsf(event: AgentEvent | Obj): Obj {
  const e = event as Obj;
  const type = String(e.type ?? '');
  const [family = '', verb = ''] = type.split('.');
  const timeMs = Date.parse(String(e.time ?? ''));
  const base: Obj = {
    time: Number.isNaN(timeMs) ? null : timeMs,
    metadata: dropNulls({
      version: OCSF_VERSION,
      uid: str(e.id),
      sequence: num(e.seq),
      log_name: 'toolguard',
      original_time: str(e.time),
      product: { name: 'toolguard', vendor_name: 'toolguard', version: str(e.agent_version) },
    }),
    device: dropNulls({ uid: str(e.device_id), hostname: str(e.hostname), type_id: 0 }),
    message: type,
    unmapped: { toolguard: e },
  };
  const rule = obj(e.rule);
  const policy = dropNulls({
    uid: str(rule.id),
    name: str(rule.name),
    version: num(e.policy_version) !== null ? String(e.policy_version) : null,
    desc: str(e.reason) ? `matched by ${String(e.reason)}` : null,
  });
  let cls: { class_uid: number; category_uid: number; activity_id: number; rest: Obj };
  switch (family) {
    case 'process': {
      const sp = obj(e.script_package);
      cls = {
        class_uid: 1007,
        category_uid: 1,
        activity_id: 1,
        rest: {
          ...enforcementOf(e, verb),
          actor: { user: user(e) },
          process: dropNulls({
            pid: num(e.pid),
            name: str(e.name),
            cmd_line: Array.isArray(e.argv) ? (e.argv as unknown[]).map(String).join(' ') : null,
            created_time: null,
            user: user(e),
            parent_process: num(e.ppid) !== null ? { pid: num(e.ppid) } : null,
            file: str(e.exe)
              ? dropNulls({
                  path: str(e.exe),
                  name: String(e.exe).split(/[\\/]/).pop(),
                  type_id: 1,
                  hashes: str(e.sha256) ? [{ algorithm_id: 3, value: e.sha256 }] : null,
                })
              : null,
            tty: str(e.tty),
          }),
          ...(Object.keys(sp).length
            ? {
                package: dropNulls({
                  name: str(sp.name),
                  version: str(sp.version),
                  type_id: 99,
                  type: 'npm',
                }),
              }
            : {}),
          policy,
        },
      };
      break;
    }
    case 'package': {
      const p = obj(e.package);
      cls = {
        class_uid: 5020,
        category_uid: 5,
        activity_id: 1,
        rest: {
          ...enforcementOf(e, verb),
          actor: { user: user(e) },
          package: dropNulls({
            name: str(p.name),
            version: str(p.version),
            type: str(p.ecosystem),
            purl:
              str(p.name) && str(p.version)
                ? `pkg:npm/${String(p.name).replace('@', '%40')}@${String(p.version)}`
                : null,
          }),
          file: dropNulls({ path: str(p.path), type_id: 2 }),
          policy,
        },
      };
      break;
    }
    case 'path':
      cls = {
        class_uid: 1001,
        category_uid: 1,
        activity_id: verb === 'quarantined' ? 5 : 99,
        rest: {
          ...enforcementOf(e, verb),
          actor: { user: user(e) },
          file: dropNulls({ path: str(e.path), type_id: e.is_directory === true ? 2 : 1 }),
          policy,
        },
      };
      break;
    case 'policy':
      cls = {
        class_uid: 5019,
        category_uid: 5,
        activity_id: 1,
        rest: {
          severity_id: verb === 'applied' ? SEVERITY.informational : SEVERITY.medium,
          status: verb,
          policy: dropNulls({
            version: num(e.policy_version) !== null ? String(e.policy_version) : null,
            uid: str(e.sha256),
            desc: str(e.message),
          }),
          ...(verb === 'rejected' ? { status_detail: str(e.reason) } : {}),
        },
      };
      break;
    case 'agent':
      if (verb === 'tamper') {
        cls = {
          class_uid: 2004,
          category_uid: 2,
          activity_id: 1,
          rest: {
            severity_id: SEVERITY.high,
            finding_info: dropNulls({
              uid: str(e.id),
              title: `toolguard tamper: ${String(e.reason)}`,
              desc: str(e.detail),
            }),
          },
        };
        break;
      }
      cls = {
        class_uid: 6002,
        category_uid: 6,
        activity_id: verb === 'started' ? 3 : verb === 'stopped' ? 4 : 99,
        rest: {
          severity_id: SEVERITY.informational,
          app: { name: 'guardd', vendor_name: 'toolguard', version: str(e.agent_version) },
          ...(verb === 'stopped' ? { status_detail: str(e.reason) } : {}),
        },
      };
      break;
    default:
      // events.dropped and anything newer: Application Lifecycle / Other
      cls = {
        class_uid: 6002,
        category_uid: 6,
        activity_id: 99,
        rest: {
          severity_id: type === 'events.dropped' ? SEVERITY.medium : SEVERITY.informational,
          app: { name: 'guardd', vendor_name: 'toolguard', version: str(e.agent_version) },
          ...(type === 'events.dropped' ? { count: num(e.count) } : {}),
        },
      };
  }
  return {
    ...base,
    class_uid: cls.class_uid,
    category_uid: cls.category_uid,
    activity_id: cls.activity_id,
    type_uid: cls.class_uid * 100 + cls.activity_id,
    ...cls.rest,
  };
}
