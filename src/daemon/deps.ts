/**
 * Owns the composition root of guardd: the one place that reads the config and builds the
 * concrete objects (state DB, outbox, policy manager and updater, matcher pipeline, sensors,
 * actions, enforcer, shipper, heartbeat, control server) and wires them together. Everything else
 * receives its dependencies, so tests pass real objects or small fakes at the edges.
 *
 * Start order: state → outbox (so every later step can record events) → policy (so sensors start
 * with the policy in force) → enforcement → sensors → shipping → control socket.
 * Stop order is the reverse, and the outbox closes last.
 */
import { hostname, release } from 'node:os';
import { join } from 'node:path';
import { errorMessage, GuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { currentPlatform, socketPaths } from '../common/platform-paths.js';
import { makeDirs } from '../common/private-dir.js';
import { UserDirectory } from '../common/users.js';
import { uuidv7 } from '../common/uuidv7.js';
import { AGENT_VERSION } from '../common/version.js';
import type { Config } from '../config/settings.js';
import { ControlServer } from '../control/control-server.js';
import type { ControlMethods } from '../control/protocol.js';
import type { DaemonStatus } from '../control/status.js';
import { BlockProcessAction } from '../enforcement/actions/block-process.js';
import { DenyExecAction } from '../enforcement/actions/deny-exec.js';
import { NotifyInstallAction } from '../enforcement/actions/notify-install.js';
import { NotifyProcessAction } from '../enforcement/actions/notify-process.js';
import { QuarantineAction } from '../enforcement/actions/quarantine.js';
import { decide } from '../enforcement/decide.js';
import { FULL_SCOPE } from '../enforcement/enforcement-scope.js';
import { Enforcer } from '../enforcement/enforcer.js';
import { ExecDenyListener, loadExecPermAddon } from '../enforcement/exec-deny.js';
import { SessionNotifier } from '../enforcement/notify/session-notifier.js';
import { OwnerSession } from '../enforcement/owner-fs.js';
import { QuarantineStore, quarantineControlMethods } from '../enforcement/quarantine-store.js';
import type { AgentEvent, EventSink } from '../events/event-types.js';
import { PolicyManager } from '../policy/policy-manager.js';
import { PolicyUpdater, policyControlMethods } from '../policy/policy-updater.js';
import { ContentMarkerScanner, type FileIdentity } from '../sensors/content-markers.js';
import { ExeHasher } from '../sensors/exe-hash.js';
import { type FileFactCaches, newFileFactCaches } from '../sensors/file-facts.js';
import { FUSE_ANSWER_MAX_CHARS, FuseExeReader } from '../sensors/fuse-exe.js';
import { preExecObservation } from '../sensors/pre-exec-observation.js';
import { SENSORS } from '../sensors/registry.js';
import type { Sensor } from '../sensors/sensor.js';
import {
  CollectorClient,
  STATE_DEVICE_TOKEN,
  STATE_DEVICE_TOKEN_DEVICE,
} from '../shipping/collector-client.js';
import { Heartbeat } from '../shipping/heartbeat.js';
import { Shipper, STOP_SEND_BUDGET_MS } from '../shipping/shipper.js';
import { type Db, openDatabase, StateStore } from '../store/database.js';
import { DeviceIdentity } from '../store/device-identity.js';
import { MIGRATIONS } from '../store/migrations.js';
import { eventsControlMethods, OutboxStore } from '../store/outbox-store.js';
import { currentBootId, ProcessReports } from '../store/process-reports.js';
import { SentLog, sentControlMethods } from '../store/sent-log.js';
import { boundedStep } from './bounded-step.js';
import { describeEvent } from './event-line.js';
import type { LocalMode } from './local-mode.js';
import { Pipeline } from './pipeline.js';
import { ShadowEvaluator } from './shadow-evaluator.js';

export interface BuildDaemonOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Set by `guardd --local`: prints one line per event and closes the embedded collector at stop. */
  readonly local: LocalMode | null;
}

export interface Daemon {
  /** Starts every component. Called once. */
  start(): Promise<void>;
  /** Stops every component, drains in-flight actions, records agent.stopped, closes the DB. Idempotent. */
  stop(reason: string): Promise<void>;
  /** Fetches the policy now (SIGHUP, `guardctl policy reload`). */
  refreshPolicy(): Promise<unknown>;
  status(): DaemonStatus;
}

/** How often the policy's expiry is checked: a stale policy is reported within this many ms. */
const FRESHNESS_CHECK_MS = 60_000;

export async function buildDaemon({ config, logger, local }: BuildDaemonOptions): Promise<Daemon> {
  const platform = currentPlatform();
  const stateDir = config['paths.state_dir'];
  makeDirs(stateDir, 0o700);
  const startedAt = new Date();
  const host = hostname();

  // State DB and outbox first: every later step can record what happens.
  const { db, recovered } = openDatabase(join(stateDir, 'guardd.db'), { migrations: MIGRATIONS });
  const state = new StateStore(db);
  const sentLog = new SentLog(db);
  // The identity file outlives a corrupt DB; the DB's copy is read once, for installs that
  // predate the file.
  const identity = DeviceIdentity.open(stateDir);
  const deviceId =
    config['device.id'] || identity.get<string>('device_id') || state.get<string>('device_id') || uuidv7();
  identity.set('device_id', deviceId);
  state.set('device_id', deviceId);
  if (identity.get(STATE_DEVICE_TOKEN) === undefined) {
    const legacy = state.get<string | null>(STATE_DEVICE_TOKEN);
    if (typeof legacy === 'string') {
      identity.set(STATE_DEVICE_TOKEN_DEVICE, state.get<string | null>(STATE_DEVICE_TOKEN_DEVICE) ?? null);
      identity.set(STATE_DEVICE_TOKEN, legacy);
    }
  }
  // A recreated DB counts seq from 1 again: enroll anew, so the collector opens a new enrollment
  // generation of the same device (its seq guards start over) instead of a second device.
  if (recovered) identity.set(STATE_DEVICE_TOKEN, null);

  let shipper: Shipper | null = null;
  const outbox = new OutboxStore({
    db,
    deviceId,
    hostname: host,
    maxBytes: config['outbox.max_bytes'],
    logger: logger.child({ component: 'outbox' }),
    onUrgent: () => shipper?.flushNow(),
  });
  const eventConsole = local ? new EventConsole(outbox) : null;
  const events: EventSink = eventConsole ?? outbox;
  if (recovered) {
    events.emit('agent.tamper', {
      reason: 'state_db_corrupt',
      detail: `${recovered.problem}; moved to ${recovered.movedTo}`,
    });
  }

  // users() never waits: it answers from its last background round, and says when a round changed
  // it (then the policies are recompiled below, and the sensors rescan with the new homes).
  const users = new UserDirectory({ platform });
  /** The homes last handed out (sorted, one a line). */
  let homesHanded = '';
  const homes = (): string[] => {
    const list =
      config['sensors.install.homes'].length > 0
        ? [...config['sensors.install.homes']]
        : users.users().map((u) => u.home);
    homesHanded = [...list].sort().join('\n');
    return list;
  };

  // Enforcement.
  const notifier = new SessionNotifier({
    logger: logger.child({ component: 'notify' }),
    platform,
    desktop: config['enforcement.notify_desktop'],
    terminal: config['enforcement.notify_terminal'],
  });
  const quarantineStore = new QuarantineStore({
    db,
    quarantineDir: join(stateDir, 'quarantine'),
    logger: logger.child({ component: 'quarantine' }),
  });
  const enforcer = new Enforcer({
    actions: {
      blockProcess: new BlockProcessAction({ notifier, logger: logger.child({ component: 'action.block' }) }),
      notifyProcess: new NotifyProcessAction({
        notifier,
        logger: logger.child({ component: 'action.notify' }),
      }),
      quarantine: new QuarantineAction({
        store: quarantineStore,
        notifier,
        logger: logger.child({ component: 'action.quarantine' }),
      }),
      notifyInstall: new NotifyInstallAction({
        notifier,
        logger: logger.child({ component: 'action.notify' }),
      }),
      denyExec: new DenyExecAction({ notifier, logger: logger.child({ component: 'action.deny' }) }),
    },
    events,
    logger: logger.child({ component: 'enforcer' }),
    warnIntervalMs: config['enforcement.warn_interval_s'] * 1000,
    // Local mode acts only within its scope (see local-mode.ts); a real deployment on every match.
    ...(local ? { scope: local.scope } : {}),
    // A banned script being killed: its file gets an open mark (off with pre-exec deny off).
    onProcessBlock: (obs, decision) => execDeny.listener?.openMarks.consider(obs, decision),
  });
  const reports = new ProcessReports(db);
  reports.beginBoot(currentBootId(), state);
  // The shadow policy: decided like the enforced one (same scope), reported, never acted on.
  const shadowEvaluator = new ShadowEvaluator({ events, scope: local ? local.scope : FULL_SCOPE });
  const pipeline = new Pipeline({
    enforcer,
    logger: logger.child({ component: 'pipeline' }),
    hostname: host,
    deviceTags: config['device.tags'],
    reports,
    shadow: shadowEvaluator,
  });

  // What executables' bytes said (hashes, markers), by file identity: read once, by whichever of
  // the pre-exec listener and the process sensor sees a file first (file-facts.ts).
  const fileFacts = newFileFactCaches();
  const execDeny = buildExecDeny(config, logger, local !== null, {
    pipeline,
    enforcer,
    users,
    fileFacts,
    protectedDirs: [stateDir, config['paths.socket_dir']],
  });

  // Policy: the matcher in force is swapped into the pipeline in one step. Both channels share
  // keys, threshold, freshness and caps.
  const policyOptions = {
    state,
    db,
    trustedKeys: config['policy.trusted_keys'],
    threshold: config['policy.threshold'],
    clockSkewS: config['policy.clock_skew_s'],
    maxBytes: config['policy.max_bytes'],
    platform,
    homes,
    protectedDirs: [stateDir, config['paths.socket_dir']],
    events,
  };
  const policy = new PolicyManager({
    ...policyOptions,
    logger: logger.child({ component: 'policy' }),
    onChange: (matcher) => {
      pipeline.setMatcher(matcher);
      execDeny.listener?.policyChanged();
    },
  });
  // The shadow channel: its own anti-rollback.
  const shadowPolicy = new PolicyManager({
    ...policyOptions,
    logger: logger.child({ component: 'policy.shadow' }),
    channel: 'shadow',
    onChange: (matcher, verified) => pipeline.setShadowMatcher(verified ? matcher : null),
  });
  // A user or home came or went (a background round of the user directory): `~` in the policies
  // stands for the new homes, and the install sensor (told of the new matcher) scans them.
  users.onChange(() => {
    const before = homesHanded;
    homes();
    if (homesHanded === before) return;
    policy.rebuildMatcher();
    shadowPolicy.rebuildMatcher();
  });
  const policyUrl =
    config['policy.url'] ||
    (config['collector.url'] ? `${config['collector.url'].replace(/\/+$/, '')}/v1/policy` : '');
  // The shadow is the collector's: fetched when the policy URL is a collector's /v1/policy.
  const shadowUrl = /\/v1\/policy$/.test(policyUrl) ? `${policyUrl}/shadow` : '';
  const updater = policyUrl
    ? new PolicyUpdater({
        manager: policy,
        url: policyUrl,
        cron: config['policy.refresh_cron'],
        jitterS: config['policy.refresh_jitter_s'],
        timeoutMs: config['policy.fetch_timeout_ms'],
        maxBytes: config['policy.max_bytes'],
        caFile: config['collector.ca_file'] || undefined,
        ...(shadowUrl ? { shadow: { manager: shadowPolicy, url: shadowUrl } } : {}),
        onAnswered: () => sentLog.record('policy', 0),
        logger: logger.child({ component: 'policy.updater' }),
      })
    : null;

  // Executables on a user's own FUSE mount, which root may not open, are read as that user in
  // an owner-fs child (fuse-exe.ts); only root can act as a user.
  const fuseExe =
    platform === 'linux' && process.getuid?.() === 0
      ? new FuseExeReader({
          session: (actor, fd) =>
            new OwnerSession(actor, { fds: [fd], maxAnswerChars: FUSE_ANSWER_MAX_CHARS }),
        })
      : undefined;

  // Sensors, from the registry.
  const sensors: Sensor[] = SENSORS.filter((s) => s.enabled(config)).map((s) =>
    s.create({
      config,
      users,
      platform,
      homes,
      fileFacts,
      ...(fuseExe ? { fuseExe } : {}),
      onObservation: pipeline.handle,
      logger: logger.child({ component: `sensor.${s.name}` }),
    }),
  );

  // Shipping.
  if (config['collector.url']) {
    const client = new CollectorClient({
      url: config['collector.url'],
      state: identity,
      deviceId,
      hostname: host,
      enrollSecret: config['collector.enroll_secret'],
      enrollSecretFile: config['collector.enroll_secret_file'],
      caFile: config['collector.ca_file'] || undefined,
      timeoutMs: config['collector.timeout_ms'],
      sent: sentLog,
      logger: logger.child({ component: 'collector-client' }),
    });
    shipper = new Shipper({
      outbox,
      client,
      batchMaxEvents: config['shipper.batch_max_events'],
      batchMaxBytes: config['shipper.batch_max_bytes'],
      intervalMs: config['shipper.interval_ms'],
      backoffMaxS: config['shipper.backoff_max_s'],
      logger: logger.child({ component: 'shipper' }),
    });
  }

  const status = (): DaemonStatus => {
    const ship = shipper?.status();
    return {
      running: true,
      pid: process.pid,
      version: AGENT_VERSION,
      started_at: startedAt.toISOString(),
      local_mode: local !== null,
      device_id: deviceId,
      hostname: host,
      policy: policy.status(),
      shadow: shadowPolicy.current() ? { ...shadowPolicy.status(), ...shadowEvaluator.counts() } : null,
      sensors: sensors.map((s) => {
        const st = s.status();
        return { name: st.name, running: st.running, details: { ...st.details }, skipped: { ...st.skipped } };
      }),
      enforcement: enforcer.status(),
      exec_deny: execDeny.listener
        ? execDeny.listener.status()
        : { state: 'off', reason: execDeny.offReason ?? 'not started' },
      outbox: outbox.status(),
      shipper: ship ?? {
        collector_url: null,
        enrolled: false,
        last_success_at: null,
        last_error: null,
        shipped_total: 0,
      },
    };
  };

  const heartbeat = new Heartbeat({
    cron: config['shipper.heartbeat_cron'],
    events,
    summary: () => {
      const s = status();
      return {
        uptime_s: Math.round((Date.now() - startedAt.getTime()) / 1000),
        policy_version: s.policy.version,
        policy_state: s.policy.state,
        outbox_depth: s.outbox.depth,
        dropped_total: s.outbox.dropped_total,
        set_aside_total: outbox.status().set_aside_total,
        shipped_total: s.shipper.shipped_total,
        counts: { ...s.enforcement, repeats: pipeline.counts().repeats },
        exec_deny:
          s.exec_deny?.state === 'on'
            ? {
                state: 'on',
                events: s.exec_deny.counters.events ?? 0,
                cache_hits: s.exec_deny.counters.cache_hits ?? 0,
                denied: s.exec_deny.counters.denied ?? 0,
                deadline_misses: s.exec_deny.counters.deadline_misses ?? 0,
                overflow: s.exec_deny.counters.overflow ?? 0,
              }
            : { state: 'off' },
        exec_events: execEventsCoverage(s.sensors.find((x) => x.name === 'process')?.details),
        sensors: Object.fromEntries(s.sensors.map((x) => [x.name, x.running])),
        tags: heartbeatTags(config['device.tags']),
      };
    },
  });

  const methods: ControlMethods = {
    status: { admin: false, summary: 'what the daemon is doing', handle: () => status() },
    ...eventsControlMethods(outbox),
    ...sentControlMethods(sentLog),
    // policy.show answers with or without a fetch URL (a bootstrap-only policy is still in force)
    ...policyControlMethods(updater, policy, shadowPolicy),
    ...quarantineControlMethods(quarantineStore, { events, stillBanned: (obs) => pipeline.wouldMatch(obs) }),
    ...(process.env.TOOLGUARD_TEST_HOOKS === '1' ? testHookMethods() : {}),
  };
  const sockets = socketPaths(config['paths.socket_dir'], platform);
  const control = new ControlServer({
    publicPath: sockets.public,
    adminPath: sockets.admin,
    methods,
    logger: logger.child({ component: 'control' }),
  });

  let freshnessTimer: NodeJS.Timeout | null = null;
  let stopped = false;

  return {
    async start() {
      events.emit('agent.started', {
        local_mode: local !== null,
        pid: process.pid,
        platform,
        os_release: release(),
        node_version: process.version,
        ...(recovered
          ? { store_recovered: { moved_to: recovered.movedTo, problem: recovered.problem } }
          : {}),
      });
      await quarantineStore.recover(); // before any sensor can report a path recovery is about to put back
      policy.loadInitial(config['paths.bootstrap_policy'] || join(stateDir, 'bootstrap-policy.dsse.json'));
      shadowPolicy.loadInitial(null);
      for (const s of sensors) pipeline.addSensor(s);
      pipeline.setMatcher(policy.matcher());
      execDeny.listener?.policyChanged();
      // Before the sensors: a banned program is refused from the first exec on.
      if (execDeny.listener) {
        try {
          execDeny.listener.start();
        } catch (err) {
          execDeny.offReason = errorMessage(err);
          execDeny.listener = null;
          logger.error(
            { err: execDeny.offReason },
            'pre-exec deny failed to start; blocked programs are killed after they start',
          );
        }
      }
      await control.start();
      // Local mode says what it may act on before the first sensor can report anything.
      if (local && eventConsole) {
        printBanner(local, status(), sensors);
        eventConsole.release();
      }
      for (const s of sensors) await s.start();
      freshnessTimer = setInterval(() => {
        policy.checkFreshness();
        shadowPolicy.checkFreshness();
      }, FRESHNESS_CHECK_MS);
      freshnessTimer.unref();
      updater?.start();
      shipper?.start();
      heartbeat.start();
      logger.info(
        { device_id: deviceId, policy: policy.status().version, local: local !== null },
        'guardd started',
      );
      // A first policy fetch right away, so a fresh machine does not wait for the schedule.
      if (updater)
        void updater.refreshNow().catch((err: unknown) => logger.warn({ err }, 'first policy fetch failed'));
    },
    async stop(reason) {
      if (stopped) return;
      stopped = true;
      if (freshnessTimer) clearInterval(freshnessTimer);
      heartbeat.stop();
      updater?.stop();
      execDeny.listener?.stop();
      // Each waiting step is bounded: a stop never waits on one component for ever (the service
      // manager would kill guardd without agent.stopped, the DB closed or the outbox flushed).
      const step = (name: string, work: () => Promise<unknown>) => boundedStep(name, work, { logger });
      await step('sensors', () => Promise.allSettled(sensors.map((s) => s.stop())));
      await step('actions', () => pipeline.drain());
      await step('control', () => control.stop());
      enforcer.flushDenials();
      events.emit('agent.stopped', { reason });
      await step('shipper', () => shipper?.stop(STOP_SEND_BUDGET_MS) ?? Promise.resolve());
      await step('local collector', () => local?.collector.close() ?? Promise.resolve());
      closeDb(db, logger);
    },
    refreshPolicy: async () =>
      updater
        ? updater.refreshNow()
        : {
            status: 'failed',
            error: { code: 'GUARD_POLICY_FETCH_FAILED', message: 'no policy URL configured' },
          },
    status,
  };
}

/** Longest stall the test hook accepts (ms): enough to outlast any deadline setting. */
const TEST_STALL_MAX_MS = 10_000;

/**
 * Test hooks, present only when guardd's environment has TOOLGUARD_TEST_HOOKS=1 (never set by the
 * service units or installers; documented as test-only in docs/process-detection.md) and only on
 * the root-only admin socket. `test.stall_loop {ms}` blocks guardd's event loop synchronously for
 * `ms`, as a decision stuck in JS would: the pre-exec deadline test proves execs are still answered.
 */
function testHookMethods(): ControlMethods {
  return {
    'test.stall_loop': {
      admin: true,
      summary: 'TEST ONLY: block the event loop for params.ms milliseconds',
      handle: (params) => {
        const ms = Number(params.ms);
        if (!Number.isInteger(ms) || ms < 0 || ms > TEST_STALL_MAX_MS)
          throw new GuardError('GUARD_CONTROL_BAD_REQUEST', `ms must be an integer 0..${TEST_STALL_MAX_MS}`);
        // Deliberately synchronous: the point is a busy loop that answers nothing meanwhile.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
        return { stalled_ms: ms };
      },
    },
  };
}

/** The pre-exec listener, or why it is off (status says it). */
interface ExecDenySlot {
  listener: ExecDenyListener | null;
  offReason: string | null;
}

/**
 * Pre-exec deny (src/enforcement/exec-deny.ts): on with `enforcement.exec_deny: auto` as root on
 * Linux when the addon loads; never in local mode (a demo must not answer the machine's execs).
 */
function buildExecDeny(
  config: Config,
  logger: Logger,
  local: boolean,
  deps: {
    pipeline: Pipeline;
    enforcer: Enforcer;
    users: UserDirectory;
    fileFacts: FileFactCaches;
    protectedDirs: readonly string[];
  },
): ExecDenySlot {
  const off = (reason: string): ExecDenySlot => ({ listener: null, offReason: reason });
  if (config['enforcement.exec_deny'] === 'off') return off('enforcement.exec_deny is off');
  if (local) return off('local mode');
  if (process.platform !== 'linux') return off('not Linux');
  if (process.getuid?.() !== 0) return off('not root');
  let addon: ReturnType<typeof loadExecPermAddon>;
  try {
    addon = loadExecPermAddon();
  } catch (err) {
    logger.warn({ err: errorMessage(err) }, 'pre-exec deny unavailable');
    return off(errorMessage(err));
  }
  // Its own admission gates (a user's reads in the sensor never hold a slot an exec waits for),
  // the caches shared.
  const hasher = new ExeHasher({ cache: deps.fileFacts.hashes });
  const scanner = new ContentMarkerScanner({ cache: deps.fileFacts.markers });
  const { pipeline, enforcer, users } = deps;
  const listener = new ExecDenyListener({
    addon,
    deadlineMs: config['enforcement.exec_deny_deadline_ms'],
    logger: logger.child({ component: 'exec-deny' }),
    matcher: () => pipeline.matcherInForce(),
    decide: (obs, matcher) => decide(obs, { matcher, match: pipeline.matchContext(), scope: FULL_SCOPE }),
    observe: (req, matcher) =>
      preExecObservation(req, {
        procRoot: '/proc',
        owner: (uid) => users.owner(uid),
        hash: (path, uid) => hasher.hash(path, uid),
        needsSha256: matcher?.needs.sha256 ?? false,
        ...(matcher?.needs.markers
          ? {
              // With the identity the verdict will be cached under: a file rewritten since the
              // request is not scanned (a verdict on new bytes under the old identity).
              markers: async (path: string, uid: number, expected?: FileIdentity) => {
                const automaton = matcher.markers();
                return automaton ? (await scanner.scan(path, automaton, uid, expected)).found : null;
              },
            }
          : {}),
      }),
    denied: (obs, decision, facts) => enforcer.denied(obs, decision, facts),
    protectedDirs: deps.protectedDirs,
    openMarks: config['enforcement.open_marks'] !== 'off',
    owner: (uid) => users.owner(uid),
    fileReads: () => ({ sha256: { ...hasher.counts }, markers: { ...scanner.counts } }),
  });
  return { listener, offReason: null };
}

/**
 * The heartbeat's `exec_events`: whether the process sensor's source is the kernel's exec events
 * (on) or polling (off), and the counters that say what it may have missed.
 */
function execEventsCoverage(details: Record<string, unknown> | undefined): Record<string, unknown> {
  const n = (k: string): number => {
    const v = details?.[k];
    return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0;
  };
  const kinds = ['exec-events', 'eslogger', 'windows-start', 'procfs', 'ps-list'];
  const source =
    typeof details?.source === 'string' && kinds.includes(details.source) ? { source: details.source } : {};
  if (details?.exec_events !== 'active') return { state: 'off', ...source };
  return {
    state: 'on',
    ...source,
    received: n('exec_events_received'),
    kernel_drops: n('exec_events_kernel_drops'),
    queue_drops: n('exec_events_queue_drops'),
    resyncs: n('exec_events_resyncs'),
  };
}

/**
 * The heartbeat's `tags`: the device.tags setting as the event schema takes it (at most 64 distinct
 * tags of 1 to 128 characters; the setting itself is unbounded, and a heartbeat that failed the
 * schema would not be sent at all).
 */
function heartbeatTags(tags: readonly string[]): string[] {
  return [...new Set(tags.filter((t) => t.length >= 1 && t.length <= 128))].slice(0, 64);
}

function closeDb(db: Db, logger: Logger): void {
  try {
    db.close();
  } catch (err) {
    logger.error({ err: errorMessage(err) }, 'closing the state DB failed');
  }
}

/**
 * Local mode: every event also becomes one readable line on stdout. Lines of events recorded
 * while starting are held until the banner has been printed, so the screen reads top to bottom.
 */
class EventConsole implements EventSink {
  private held: string[] | null = [];

  constructor(private readonly outbox: EventSink) {}

  emit(type: Parameters<EventSink['emit']>[0], fields: Parameters<EventSink['emit']>[1]): AgentEvent | null {
    const event = this.outbox.emit(type, fields);
    if (event) this.print(describeEvent(event));
    return event;
  }

  /** Prints the held lines; from now on lines are printed as they come. */
  release(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const line of held) this.print(line);
  }

  private print(line: string): void {
    if (this.held) this.held.push(line);
    else process.stdout.write(`${line}\n`);
  }
}

function printBanner(local: LocalMode, s: DaemonStatus, sensors: readonly Sensor[]): void {
  const uid = process.getuid?.() ?? -1;
  const who = local.scope.monitorOnly
    ? [
        `running as ${uid === -1 ? 'a Windows user (owners are not compared)' : 'root'}: MONITOR ONLY. Nothing is stopped or moved; matches are reported as "would block".`,
        '  (`guardd --local --enforce` stops matching processes that any user starts from now on.)',
      ]
    : uid === 0 || uid === -1
      ? [
          'running as root with --enforce: it WILL stop matching processes that ANY user starts from now on.',
          '  Processes already running are only reported ("would block").',
        ]
      : [
          `running as uid ${uid}: it stops only processes you start from now on; other users' processes`,
          '  and processes already running are only reported ("would block").',
        ];
  const lines = [
    'toolguard local mode',
    ...who.map((l) => `  ${l}`),
    `  packages: only under its demo prefix ${local.npmPrefix} (npm install -g --prefix <it> …); your real npm trees are not watched`,
    `  state in ${local.dir}; embedded collector at ${local.collectorUrl}`,
    `  fleet console: ${local.collectorUrl}/console/ (log in with the token in ${join(local.dir, 'collector-admin-token')})`,
    `  policy v${s.policy.version ?? '?'} (${s.policy.rules} rules, mode ${s.policy.mode}) signed by a local development key`,
    `  sensors: ${sensors.map((x) => x.name).join(', ') || 'none'}`,
    '  look:  npx guardctl status      try:  cp "$(command -v sleep)" /tmp/claude && /tmp/claude 60',
    '  Ctrl-C stops everything.',
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
