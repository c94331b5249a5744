/**
 * Owns watching process launches: on a fixed interval it asks its `ProcessSource` which processes
 * are new, turns each into a `ProcessObservation` (owner from the user directory; SHA-256 of the
 * executable and the script package of interpreters only when the matcher in force needs them),
 * and hands it to the pipeline. The first scan at start reports every process already running, so
 * a tool started before guardd is caught; a new policy makes the next scan report everything again.
 *
 * The sensor never waits for enforcement: `onObservation` runs detached, so a slow notification
 * cannot delay the next scan. Ticks never overlap (each is scheduled after the previous ends).
 * Hash and script package read files the user controls, so they never run in the scan: an
 * observation that needs them is handed over when they answered (or their deadline passed).
 */
import { basename } from 'node:path';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { UserDirectory } from '../common/users.js';
import type { Matcher } from '../policy/matcher.js';
import { ContentMarkerScanner } from './content-markers.js';
import { ExeHasher } from './exe-hash.js';
import type { ProcessObservation } from './observation.js';
import type { ProcessSource, RawProcess } from './process-sources/process-source.js';
import { isInterpreter, ScriptPackageResolver } from './script-package.js';
import type { ObservationHandler, Sensor, SensorStatus } from './sensor.js';

export interface ProcessSensorOptions {
  readonly source: ProcessSource;
  /** Resolves uid → owner (name, groups, home). */
  readonly users: Pick<UserDirectory, 'owner'>;
  /** The pipeline entry; called once per new process, not awaited by the scan. */
  readonly onObservation: ObservationHandler;
  /** Scan interval (ms); 0 = the source default (procfs 100 ms, ps-list 1000 ms). */
  readonly intervalMs: number;
  readonly logger: Logger;
  /** guardd's own pid: never reported. Default process.pid. */
  readonly selfPid?: number;
  /** Hashes executables when a rule needs SHA-256 (created if absent). */
  readonly hasher?: ExeHasher;
  /** Finds interpreters' script packages when a rule needs them (created if absent). */
  readonly scripts?: ScriptPackageResolver;
  /** Scans executables for content markers when a rule has them (created if absent). */
  readonly markers?: ContentMarkerScanner;
}

/**
 * Observations handed to the pipeline but not finished yet, at most: beyond it new ones are
 * counted (`backlog`) and dropped. Normal load keeps a handful in flight; 10,000 means the pipeline
 * is stuck, and memory must stay bounded.
 */
const MAX_IN_FLIGHT = 10_000;
/**
 * A script package lookup that ran out of time (a burst queued ahead of it, or the user's own
 * stalled mount) is tried again this long later (ms), up to SCRIPT_RETRY_MAX times, while the
 * process runs the same program: a burst of launches cannot make a banned script go unattributed
 * for good. The observation without the package was handed over already (names, exe, argv).
 */
const SCRIPT_RETRY_MS = 1000;
const SCRIPT_RETRY_MAX = 5;
/** Retries waiting at most; beyond it a stalled lookup is counted and not retried (bounded memory). */
const SCRIPT_RETRY_PENDING_MAX = 10_000;
/** `stop` waits this long for in-flight observations, so a stuck handler cannot hang shutdown (ms). */
const STOP_DRAIN_MS = 5000;

export class ProcessSensor implements Sensor {
  readonly name = 'process';
  private readonly log: Logger;
  private readonly intervalMs: number;
  private readonly selfPid: number;
  private hasher: ExeHasher | null;
  private scripts: ScriptPackageResolver | null;
  private markerScanner: ContentMarkerScanner | null;
  private matcher: Matcher | null = null;
  private needs = { sha256: false, scriptPackage: false, markers: false };
  private policyVersion: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private ticking: Promise<void> | null = null;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private readonly skippedHere: Record<string, number> = {};
  private ticks = 0;
  private observed = 0;
  private lastTickMs = 0;
  private maxTickMs = 0;

  constructor(private readonly options: ProcessSensorOptions) {
    this.log = options.logger;
    this.intervalMs = options.intervalMs > 0 ? options.intervalMs : options.source.defaultIntervalMs;
    this.selfPid = options.selfPid ?? process.pid;
    this.hasher = options.hasher ?? null;
    this.scripts = options.scripts ?? null;
    this.markerScanner = options.markers ?? null;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.runTick();
    this.schedule();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const t of this.retryTimers) clearTimeout(t);
    this.retryTimers.clear();
    if (this.ticking) await this.ticking;
    // Releases what the source holds (procfs: its /proc/<pid>/stat descriptors); a later start
    // reports every process again, as a first start does.
    this.options.source.reset();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, STOP_DRAIN_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  setMatcher(matcher: Matcher): void {
    this.needs = {
      sha256: matcher.needs.sha256,
      scriptPackage: matcher.needs.scriptPackage,
      markers: matcher.needs.markers,
    };
    this.matcher = matcher;
    if (this.policyVersion !== null && this.policyVersion !== matcher.policyVersion) {
      // A new policy may ban something already running: report every process again.
      this.options.source.reset();
    }
    this.policyVersion = matcher.policyVersion;
  }

  status(): SensorStatus {
    const skipped: Record<string, number> = { ...this.options.source.skipped };
    for (const [k, v] of Object.entries(this.skippedHere)) skipped[k] = (skipped[k] ?? 0) + v;
    return {
      name: this.name,
      running: this.running,
      details: {
        source: this.options.source.kind,
        interval_ms: this.intervalMs,
        ticks: this.ticks,
        observed: this.observed,
        last_tick_ms: round(this.lastTickMs),
        max_tick_ms: round(this.maxTickMs),
        in_flight: this.inFlight.size,
        needs: { ...this.needs },
        ...(this.hasher ? { hash: { ...this.hasher.counts, cached: this.hasher.cached } } : {}),
        ...(this.markerScanner
          ? { content_markers: { ...this.markerScanner.counts, cached: this.markerScanner.cached } }
          : {}),
        ...(this.scripts
          ? { script_packages: { ...this.scripts.counts, gate: this.scripts.gateStatus() } }
          : {}),
        ...this.options.source.details(),
      },
      skipped,
    };
  }

  /** Runs one scan now (tests and `start`); resolves when every new process was handed over. */
  async runTick(): Promise<void> {
    if (this.ticking) return this.ticking;
    this.ticking = this.tick().finally(() => {
      this.ticking = null;
    });
    return this.ticking;
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      void this.runTick().finally(() => this.schedule());
    }, this.intervalMs);
  }

  private async tick(): Promise<void> {
    const started = performance.now();
    let fresh: RawProcess[];
    try {
      fresh = await this.options.source.poll();
    } catch (err) {
      // Sources do not reject by contract; a bug there must not stop the sensor.
      this.count('source_error');
      this.log.error({ err: errorMessage(err) }, 'process source failed');
      fresh = [];
    }
    this.ticks++;
    for (const raw of fresh) {
      if (raw.pid === this.selfPid) continue;
      this.handle(raw);
    }
    this.lastTickMs = performance.now() - started;
    if (this.lastTickMs > this.maxTickMs) this.maxTickMs = this.lastTickMs;
  }

  private handle(raw: RawProcess): void {
    let obs: ProcessObservation;
    try {
      obs = this.observe(raw);
    } catch (err) {
      this.count('observe_error');
      this.log.warn({ pid: raw.pid, err: errorMessage(err) }, 'could not build observation');
      return;
    }
    // A dynamic loader run directly: the rules look at the program it runs, not at the loader.
    const loaded = this.options.source.loadedProgram?.(raw) ?? null;
    if (loaded) obs = { ...obs, name: basename(loaded.exe), exe: loaded.exe };
    const filePath = loaded ? loaded.openPath : this.options.source.hashPath(raw);
    const hashPath = this.needs.sha256 ? filePath : null;
    const markerPath = this.needs.markers ? filePath : null;
    const script =
      this.needs.scriptPackage && (isInterpreter(raw.name) || (raw.exe !== null && isInterpreter(raw.exe)));
    if (!script && hashPath === null && markerPath === null) {
      this.emit(this.needs.scriptPackage ? { ...obs, scriptPackage: null } : obs);
      return;
    }
    // Hash and script package touch files the user controls: both run off the scan, through
    // safe-read's gates and deadlines, and the observation is handed over when both answered.
    this.detach(this.enrich(raw, obs, hashPath, script, markerPath).then((full) => this.emit(full)));
  }

  private async enrich(
    raw: RawProcess,
    obs: ProcessObservation,
    hashPath: string | null,
    script: boolean,
    markerPath: string | null = null,
  ): Promise<ProcessObservation> {
    const key = raw.uid ?? -1;
    let sha256: Promise<string | null> | undefined;
    if (hashPath !== null) {
      this.hasher ??= new ExeHasher();
      sha256 = this.hasher.hash(hashPath, key);
    }
    let scriptPackage: Promise<ProcessObservation['scriptPackage']> | undefined;
    if (script) scriptPackage = this.lookupScript(raw, 0);
    const automaton = markerPath !== null ? (this.matcher?.markers() ?? null) : null;
    let markers: Promise<readonly string[] | null> | undefined;
    if (markerPath !== null && automaton !== null) {
      this.markerScanner ??= new ContentMarkerScanner();
      markers = this.markerScanner.scan(markerPath, automaton, key).then((r) => r.found);
    }
    let hash = sha256 !== undefined ? await sha256 : undefined;
    let contentMarkers = markers !== undefined ? await markers : undefined;
    // Read after the scan like the hash: another program's markers if the process exec'd since.
    if (contentMarkers && this.options.source.execedSince?.(raw)) {
      this.count('markers_after_exec');
      contentMarkers = null;
    }
    // The hash was read after the scan: if the process exec'd in between, it is another program's
    // (the source reports the new program itself, with its own hash).
    if (hash && this.options.source.execedSince?.(raw)) {
      this.count('hash_after_exec');
      hash = null;
    }
    return {
      ...obs,
      ...(hash !== undefined ? { sha256: hash } : {}),
      ...(contentMarkers !== undefined ? { contentMarkers } : {}),
      ...(scriptPackage !== undefined
        ? { scriptPackage: await scriptPackage }
        : this.needs.scriptPackage
          ? { scriptPackage: null }
          : {}),
    };
  }

  /** The script package of `raw`; a lookup that ran out of time is retried later (see SCRIPT_RETRY_MS). */
  private async lookupScript(raw: RawProcess, attempt: number): Promise<ProcessObservation['scriptPackage']> {
    this.scripts ??= new ScriptPackageResolver();
    const source = this.options.source;
    const r = await this.scripts.resolveOutcome(
      raw.exe,
      raw.name,
      raw.argv,
      () => source.cwd(raw.pid, raw.tid),
      raw.uid,
      () => source.groups?.(raw.pid, raw.tid) ?? null,
    );
    if (r.stalled) this.retryScript(raw, attempt + 1);
    return r.pkg;
  }

  private retryScript(raw: RawProcess, attempt: number): void {
    if (!this.running) return;
    if (attempt > SCRIPT_RETRY_MAX || this.retryTimers.size >= SCRIPT_RETRY_PENDING_MAX) {
      this.count('script_package_gave_up');
      return;
    }
    const t = setTimeout(() => {
      this.retryTimers.delete(t);
      // Gone, or another program now: the source reports that one itself.
      if (!this.running || this.options.source.execedSince?.(raw)) return;
      this.detach(
        this.lookupScript(raw, attempt).then((pkg) => {
          if (!pkg) return;
          this.emit({ ...this.observe(raw), scriptPackage: pkg });
        }),
      );
    }, SCRIPT_RETRY_MS);
    this.retryTimers.add(t);
  }

  private observe(raw: RawProcess): ProcessObservation {
    const owner =
      raw.uid === null ? { uid: -1, user: null, groups: [], home: null } : this.options.users.owner(raw.uid);
    return {
      kind: 'process',
      pid: raw.pid,
      ppid: raw.ppid,
      startTime: raw.startTime,
      name: raw.name,
      exe: raw.exe,
      argv: raw.argv,
      owner,
      tty: raw.tty,
    };
  }

  private emit(obs: ProcessObservation): void {
    if (this.inFlight.size >= MAX_IN_FLIGHT) {
      this.count('backlog');
      return;
    }
    this.observed++;
    let r: void | Promise<void>;
    try {
      r = this.options.onObservation(obs);
    } catch (err) {
      this.count('handler_error');
      this.log.error({ pid: obs.pid, err: errorMessage(err) }, 'observation handler threw');
      return;
    }
    if (r && typeof (r as Promise<void>).then === 'function') this.detach(r as Promise<void>);
  }

  private detach(p: Promise<void>): void {
    const tracked: Promise<void> = p
      .catch((err: unknown) => {
        this.count('handler_error');
        this.log.error({ err: errorMessage(err) }, 'observation handler failed');
      })
      .finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  private count(reason: string): void {
    this.skippedHere[reason] = (this.skippedHere[reason] ?? 0) + 1;
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
