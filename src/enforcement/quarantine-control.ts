/**
 * Owns the control API of the quarantine: `quarantine.list` and `quarantine.restore`, and the
 * shapes they answer with. The moves themselves are the store's (quarantine-store.ts).
 */
import { GuardError } from '../common/errors.js';
import type { ControlMethods } from '../control/protocol.js';
import type { EventSink } from '../events/event-types.js';
import type { PackageManager, PackageObservation, PathObservation } from '../sensors/observation.js';
import { observationFields } from './enforcer.js';
import type {
  QuarantineEntry,
  QuarantineManifest,
  QuarantineStore,
  RestoreResult,
} from './quarantine-store.js';

export interface QuarantineControlOptions {
  /**
   * True when the policy in force would still block this package / artifact (the daemon passes
   * `pipeline.wouldMatch`); asked with the observation rebuilt from the manifest.
   */
  readonly stillBanned: (obs: PackageObservation | PathObservation) => boolean;
  /**
   * When given, every successful restore is recorded as a `package.audited` / `path.audited` event
   * whose `outcome.details` is `{quarantine_id, restored: true, forced, links_removed}` (the links
   * put back) — events v1 has no `*.restored` type.
   */
  readonly events?: EventSink;
  /** Called after every successful restore. */
  readonly onRestored?: (result: RestoreResult) => void;
}

/** The observation a manifest describes (for asking the current policy about it). */
export function observationOf(m: QuarantineManifest): PackageObservation | PathObservation {
  const owner = { uid: m.owner.uid, user: m.owner.user, groups: [], home: null };
  if (m.kind === 'package' && m.package) {
    return {
      kind: 'package',
      ecosystem: 'npm',
      name: m.package.name,
      version: m.package.version,
      path: m.originalPath,
      root: m.root,
      manager: m.package.manager as PackageManager,
      owner,
    };
  }
  return { kind: 'path', path: m.originalPath, isDirectory: m.entryType === 'directory', owner };
}

/** Longest id accepted from a control request (a UUIDv7 is 36 characters). */
const MAX_ID_CHARS = 64;

/**
 * `quarantine.list` (public, read-only: what was removed and why is not secret to the machine's
 * users, and people need it to ask for a restore) and `quarantine.restore` (admin socket only).
 */
export function quarantineControlMethods(
  store: QuarantineStore,
  opts: QuarantineControlOptions,
): ControlMethods {
  return {
    'quarantine.list': {
      admin: false,
      summary: 'Entries in the quarantine (packages and artifacts moved away, and restored ones)',
      handle(params) {
        const all = params.all === true;
        return {
          entries: store
            .list()
            .filter((e) => all || e.state === 'quarantined')
            .map((e) => listItem(e)),
        };
      },
    },
    'quarantine.restore': {
      admin: true,
      summary: 'Put a quarantined package or artifact back (force needed when still banned)',
      async handle(params) {
        const started = performance.now();
        const id = params.id;
        if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_CHARS)
          throw new GuardError('GUARD_CONTROL_BAD_REQUEST', 'params.id must be a quarantine id string');
        if (params.force !== undefined && typeof params.force !== 'boolean')
          throw new GuardError('GUARD_CONTROL_BAD_REQUEST', 'params.force must be a boolean');
        const result = await store.restore(id, {
          force: params.force === true,
          stillBanned: (m) => opts.stillBanned(observationOf(m)),
        });
        opts.onRestored?.(result);
        const m = result.manifest;
        opts.events?.emit(m.kind === 'package' ? 'package.audited' : 'path.audited', {
          ...observationFields(observationOf(m)),
          rule: m.rule,
          reason: m.kind === 'package' ? 'npm_package' : 'path',
          policy_version: m.policyVersion,
          // Only `enforce` ever quarantines, so the entry was made under it.
          mode: 'enforce',
          outcome: {
            action_taken: 'audited',
            latency_ms: Math.round((performance.now() - started) * 100) / 100,
            error: result.hashVerified ? null : 'restored tree hash differs from the quarantined one',
            details: {
              quarantine_id: id,
              restored: true,
              forced: result.forced,
              links_removed: m.links.map((l) => l.path),
            },
          },
        });
        return {
          id,
          path: result.manifest.originalPath,
          hash_verified: result.hashVerified,
          links_restored: result.linksRestored,
          forced: result.forced,
        };
      },
    },
  };
}

/** What `quarantine.list` shows per entry (the JSON shape of `guardctl quarantine list --json`). */
export function listItem(e: QuarantineEntry): Record<string, unknown> {
  const m = e.manifest;
  return {
    id: e.id,
    state: e.state,
    quarantined_at: m.quarantinedAt,
    kind: m.kind,
    path: m.originalPath,
    package: m.package,
    owner: m.owner.user ?? m.owner.uid,
    rule: m.rule.id,
    policy_version: m.policyVersion,
    links: m.links.map((l) => l.path),
    links_refused: (m.linksRefused ?? []).map((r) => ({ path: r.path, reason: r.reason })),
    files: m.files,
    bytes: m.bytes,
    tree_hash: m.treeHash,
    restored_at: m.restoredAt,
  };
}
