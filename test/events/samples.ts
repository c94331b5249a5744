/** One realistic, schema-valid event of every type (the fields each emitter fills), for schema, OCSF and docs tests. */
import type { AgentEvent, EventType } from '../../src/events/event-types.js';

const envelope = (type: EventType, seq: number) => ({
  id: `0192f5e0-0000-7000-8000-${String(seq).padStart(12, '0')}`,
  time: '2026-11-24T10:00:00.000Z',
  seq,
  device_id: 'dev-1',
  hostname: 'laptop-7',
  type,
  agent_version: '0.1.0',
});

const enforcement = (
  action: 'block' | 'warn' | 'audit',
  taken: string,
  details?: Record<string, unknown>,
) => ({
  rule: { id: 'claude-code', name: 'Claude Code', action },
  reason: 'name',
  policy_version: 12,
  mode: 'enforce',
  outcome: { action_taken: taken, latency_ms: 3.25, error: null, ...(details ? { details } : {}) },
});

const proc = {
  uid: 1000,
  user: 'alice',
  pid: 4242,
  ppid: 4000,
  name: 'claude',
  exe: '/home/alice/.npm-global/lib/node_modules/@anthropic-ai/claude-code/cli.js',
  argv: ['node', '/home/alice/.npm-global/bin/claude', '--api-key', '[REDACTED]'],
  start_time: 123456,
  tty: '/dev/pts/3',
  sha256: 'a'.repeat(64),
  script_package: {
    name: '@anthropic-ai/claude-code',
    version: '1.0.0',
    path: '/home/alice/.npm-global/lib/node_modules/@anthropic-ai/claude-code',
  },
};
const pkg = {
  uid: 1000,
  user: 'alice',
  package: {
    ecosystem: 'npm',
    name: '@anthropic-ai/claude-code',
    version: '1.0.0',
    path: '/home/alice/.npm-global/lib/node_modules/@anthropic-ai/claude-code',
    root: '/home/alice/.npm-global/lib/node_modules',
    manager: 'npm',
  },
};
const path = {
  uid: 1000,
  user: 'alice',
  path: '/home/alice/.local/share/claude/versions/1.0.0',
  is_directory: true,
};

const FIELDS: Record<EventType, Record<string, unknown>> = {
  'process.blocked': {
    ...proc,
    ...enforcement('block', 'killed', {
      killed: [4242, 4243],
      since_exec_ms: 1.27,
      notified: { terminal: true, desktop: false },
    }),
  },
  'process.warned': {
    ...proc,
    ...enforcement('warn', 'warned', { notified: { terminal: true, desktop: true } }),
  },
  'process.audited': { ...proc, ...enforcement('audit', 'audited') },
  'process.denied': {
    uid: 1000,
    user: 'alice',
    pid: 4250,
    ppid: 4000,
    name: 'claude',
    exe: '/home/alice/.local/share/claude/versions/2.1.0',
    argv: [],
    start_time: 123470,
    tty: '/dev/pts/3',
    ...enforcement('block', 'denied', {
      refused: 'exec',
      verdict_cached: false,
      file: { dev: 2049, ino: 131077, size: 421527552 },
      notified: { terminal: true, desktop: false },
    }),
  },
  'package.quarantined': {
    ...pkg,
    ...enforcement('block', 'quarantined', {
      quarantine_id: 'q-1',
      links_removed: ['/usr/local/bin/claude'],
    }),
  },
  'package.warned': { ...pkg, ...enforcement('warn', 'warned') },
  'package.audited': { ...pkg, ...enforcement('audit', 'audited') },
  'path.quarantined': { ...path, ...enforcement('block', 'quarantined', { quarantine_id: 'q-2' }) },
  'path.warned': {
    ...path,
    ...enforcement('warn', 'warn_suppressed', { notified: { terminal: false, desktop: false } }),
  },
  'path.audited': { ...path, ...enforcement('audit', 'audited') },
  'policy.applied': {
    policy_version: 12,
    sha256: 'b'.repeat(64),
    previous_version: 11,
    source: 'https://c.example/v1/policy',
  },
  'policy.rejected': {
    reason: 'GUARD_POLICY_ROLLBACK',
    message: 'version 10 is lower than the accepted 12',
    policy_version: 10,
    sha256: 'c'.repeat(64),
    source: 'https://c.example/v1/policy',
  },
  'policy.stale': { policy_version: 12, expires_at: '2026-12-08T00:00:00Z' },
  'policy.shadow_match': {
    ...proc,
    subject_kind: 'process',
    shadow_version: 13,
    rule: { id: 'cursor-agent', name: 'Cursor agent', action: 'block' },
    reason: 'name',
    mode: 'enforce',
    would: 'block',
    enforced: { act: 'none', rule_id: null, policy_version: 12 },
  },
  'agent.started': {
    local_mode: false,
    pid: 99,
    platform: 'linux',
    os_release: '6.8.0',
    node_version: 'v20.19.0',
    store_recovered: { moved_to: '/var/lib/toolguard/state.db.corrupt-1', problem: 'integrity_check: x' },
  },
  'agent.stopped': { reason: 'SIGTERM' },
  'agent.heartbeat': {
    uptime_s: 300,
    policy_version: 12,
    policy_state: 'ok',
    outbox_depth: 0,
    dropped_total: 0,
    set_aside_total: 0,
    shipped_total: 17,
    counts: { blocked: 1, quarantined: 0, denied: 4, warned: 2, audited: 0, failed: 0 },
    exec_deny: { state: 'on', events: 5210, cache_hits: 5180, denied: 4, deadline_misses: 0, overflow: 0 },
    exec_events: {
      state: 'on',
      source: 'exec-events',
      received: 48210,
      kernel_drops: 0,
      queue_drops: 0,
      resyncs: 0,
    },
    sensors: { process: true, install: true },
    tags: ['ai-lab'],
  },
  'agent.tamper': { reason: 'state_db_corrupt', detail: 'integrity_check failed; moved aside' },
  'events.dropped': {
    count: 3,
    first_seq: 5,
    last_seq: 7,
    first_time: '2026-11-24T09:00:00.000Z',
    last_time: '2026-11-24T09:01:00.000Z',
    reason: 'outbox_full',
  },
};

/** The type's own fields (what an emitter passes to EventSink.emit). */
export function sampleFields(type: EventType): Record<string, unknown> {
  return structuredClone(FIELDS[type]);
}

/** A complete stored event of `type`. */
export function sampleEvent(type: EventType, seq = 1): AgentEvent {
  return { ...sampleFields(type), ...envelope(type, seq) } as AgentEvent;
}

/**
 * Edge variants of the samples (what emitters produce off the happy path), keyed by a short
 * name: nulls where the schema allows them, failed and skipped actions, monitor mode, long
 * command lines, non-ASCII names. For format tests (OCSF, ECS) that must hold for any valid event.
 */
export function sampleVariants(): Record<string, AgentEvent> {
  const ev = (type: EventType, patch: Record<string, unknown>, seq = 100) =>
    ({ ...sampleEvent(type, seq), ...patch }) as AgentEvent;
  const outcome = (taken: string, error: string | null = null, details?: Record<string, unknown>) => ({
    outcome: { action_taken: taken, latency_ms: 1.5, error, ...(details ? { details } : {}) },
  });
  // a shadow match of a package or path: no process fields
  const nonProcess = (e: AgentEvent): AgentEvent => {
    const o = { ...e } as Record<string, unknown>;
    for (const k of Object.keys(proc)) if (k !== 'uid' && k !== 'user') delete o[k];
    return o as AgentEvent;
  };
  return {
    // an install npm rolled back after its install script was stopped: its bin links removed
    'package.quarantined install_reverted': ev(
      'package.quarantined',
      outcome('install_reverted', null, { links_removed: ['/home/alice/.npm-global/bin/claude'] }),
      101,
    ),
    'package.warned install_reverted (monitor)': ev(
      'package.warned',
      { mode: 'monitor', ...outcome('install_reverted', null, { links_removed: 0 }) },
      120,
    ),
    'policy.shadow_match package (enforced warns)': nonProcess(
      ev(
        'policy.shadow_match',
        {
          subject_kind: 'package',
          ...pkg,
          reason: 'npm_package',
          enforced: { act: 'warn', rule_id: 'claude-code', policy_version: 12 },
        },
        121,
      ),
    ),
    'policy.shadow_match path (no enforced policy)': nonProcess(
      ev(
        'policy.shadow_match',
        {
          ...path,
          subject_kind: 'path',
          reason: 'path',
          would: 'warn',
          mode: 'monitor',
          enforced: { act: 'none', rule_id: null, policy_version: null },
        },
        122,
      ),
    ),
    'policy.rejected shadow channel': ev('policy.rejected', { channel: 'shadow' }, 123),
    'process.blocked failed': ev('process.blocked', outcome('failed', 'kill_failed', { killed: [] }), 102),
    // node refused the open of a banned package's marked file (open-marks.ts): it keeps running
    'process.denied open of a marked file': ev(
      'process.denied',
      {
        name: 'node',
        exe: '/usr/bin/node',
        argv: ['node', '-e', "import('/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js')"],
        script_package: {
          name: '@anthropic-ai/claude-code',
          version: '2.0.0',
          path: '/usr/lib/node_modules/@anthropic-ai/claude-code',
        },
        ...outcome('denied', null, {
          refused: 'open',
          verdict_cached: true,
          file: {
            dev: 2049,
            ino: 131078,
            size: 9_437_184,
            path: '/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js',
          },
          notified: { terminal: true, desktop: false },
        }),
      },
      124,
    ),
    'process.denied folded burst': ev(
      'process.denied',
      outcome('denied', null, {
        refused: 'exec',
        verdict_cached: true,
        repeats: 40,
        file: { dev: 2049, ino: 131079, size: 39_424 },
        notified: { terminal: false, desktop: false },
      }),
      125,
    ),
    'process.blocked skipped (exited)': ev(
      'process.blocked',
      outcome('skipped', 'exited', { killed: [] }),
      103,
    ),
    'process.blocked skipped (protected)': ev(
      'process.blocked',
      outcome('skipped', 'protected_process', { killed: [] }),
      104,
    ),
    'process.warned monitor (would_block)': ev(
      'process.warned',
      {
        mode: 'monitor',
        rule: { id: 'claude-code', name: 'Claude Code', action: 'block' },
        ...outcome('would_block'),
      },
      105,
    ),
    'process.warned out of scope': ev(
      'process.warned',
      outcome('warn_suppressed', null, { scope: 'other_user' }),
      106,
    ),
    'process.audited bare (no exe, user, tty, hash, script package)': (() => {
      const e = ev('process.audited', { exe: null, user: null, tty: null, argv: [] }, 107) as Record<
        string,
        unknown
      >;
      delete e.sha256;
      delete e.script_package;
      return e as AgentEvent;
    })(),
    'process.warned long command line': ev(
      'process.warned',
      { argv: ['node', ...Array.from({ length: 299 }, (_, i) => `--arg${i}=${'x'.repeat(8000)}`)] },
      108,
    ),
    'process.audited non-ASCII': ev(
      'process.audited',
      { user: 'jürgen', name: 'клод', exe: '/home/jürgen/bin/クロード', argv: ['クロード', '—help'] },
      109,
    ),
    'process.audited script package without version': ev(
      'process.audited',
      { script_package: { name: '@anthropic-ai/claude-code', version: null, path: '/opt/cc' } },
      110,
    ),
    'package.quarantined failed': ev(
      'package.quarantined',
      outcome('failed', 'GUARD_QUARANTINE_BUSY: EBUSY'),
      111,
    ),
    'package.warned without version': ev(
      'package.warned',
      { package: { ...(sampleFields('package.warned').package as object), version: null } },
      112,
    ),
    'package.audited unnamed user': ev('package.audited', { user: null, uid: 4242 }, 113),
    'path.quarantined file': ev(
      'path.quarantined',
      { is_directory: false, path: '/usr/local/bin/claude' },
      114,
    ),
    'path.quarantined skipped': ev('path.quarantined', outcome('skipped', 'gone'), 115),
    'path.warned excepted': ev('path.warned', outcome('excepted'), 116),
    'policy.applied first': ev('policy.applied', { previous_version: null }, 117),
    'policy.rejected unreadable': ev('policy.rejected', { policy_version: null, sha256: null }, 118),
    'agent.started darwin, recovered store': ev('agent.started', { platform: 'darwin' }, 119),
    'agent.started unknown platform, no recovery': (() => {
      const e = ev('agent.started', { platform: 'aix', local_mode: true }, 120) as Record<string, unknown>;
      delete e.store_recovered;
      return e as AgentEvent;
    })(),
    'agent.heartbeat without policy': ev(
      'agent.heartbeat',
      { policy_version: null, policy_state: 'none' },
      121,
    ),
  };
}
