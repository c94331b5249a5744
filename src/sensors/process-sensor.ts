/**
 * Owns watching process launches: on a fixed interval it asks its `ProcessSource` which processes
 * are new, turns each into a `ProcessObservation` (owner from the user directory; SHA-256 of the
 * executable and the script package of interpreters only when the matcher in force needs them),
 * and hands it to the pipeline. The first scan at start reports every process already running, so
 * a tool started before guardd is caught; a new policy makes the next scan report everything again.
 *
 * With a push source (Linux exec events) the source wakes the sensor when it read a new process,
 * and a tick runs at once to hand it over; the interval's scan keeps running as the safety sweep.
 *
 * The sensor never waits for enforcement: `onObservation` runs detached, so a slow notification
 * cannot delay the next scan. Ticks never overlap (each is scheduled after the previous ends; a
 * wake or scan asked for during a tick runs right after it).
 * Hash and script package read files the user controls, so they never run in the scan: an
 * observation that needs them is handed over when they answered (or their deadline passed).
 * An executable on its user's own FUSE mount, which root may not open, is hashed and scanned as
 * that user (`fuse`, fuse-exe.ts); a read that found no free child or got no answer in time is
 * asked again like a marker scan.
 */
import { basename, isAbsolute, join, normalize } from 'node:path';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { OWNER_WAIT_MS, type UserDirectory } from '../common/users.js';
import type { MarkerAutomaton } from '../policy/content-markers.js';
import type { Matcher } from '../policy/matcher.js';
import { ContentMarkerScanner, type MarkerScanResult } from './content-markers.js';
import { isDynamicLoader, loadedProgram } from './dynamic-loader.js';
import { ExeHasher, type HashResult } from './exe-hash.js';
import type { FileFactCaches } from './file-facts.js';
import type { FuseExeReader } from './fuse-exe.js';
import type { ProcessObservation } from './observation.js';
import type { PollReason, ProcessSource, RawProcess } from './process-sources/process-source.js';
import { scanScriptFiles } from './script-markers.js';
import { isInterpreter, ScriptPackageResolver } from './script-package.js';
import type { ObservationHandler, Sensor, SensorStatus } from './sensor.js';

export interface ProcessSensorOptions {
  readonly source: ProcessSource;
  /** Resolves uid → owner (name, groups, home). */
  readonly users: Pick<UserDirectory, 'owner'> & Partial<Pick<UserDirectory, 'settle'>>;
  /** The pipeline entry; called once per new process, not awaited by the scan. */
  readonly onObservation: ObservationHandler;
  /** Scan interval (ms); 0 = the source default (procfs 100 ms, exec events' sweep 1000 ms, ps-list 1000 ms). */
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
  /**
   * The caches of hashes and markers the hasher and scanner it creates use (file-facts.ts: guardd
   * shares them with the pre-exec listener). Default: their own.
   */
  readonly fileFacts?: FileFactCaches;
  /** Waits between marker retries (ms; the last repeats). Default MARKER_RETRY_WAITS_MS; tests shorten it. */
  readonly markerRetryWaitsMs?: readonly number[];
  /**
   * Reads, as its owner, an executable root may not open (a user's own FUSE mount), for the hasher
   * and scanner the sensor creates (fuse-exe.ts). Default: none (such a file is `unreadable`).
   */
  readonly fuse?: FuseExeReader | null;
}

/** What an executable's file said, as far as the rules need (ProcessSensor.knownFacts). */
interface FileFacts {
  readonly sha256?: string | null;
  readonly contentMarkers?: readonly string[] | null;
}

/** A process gone before its file was read: no hash, no markers (what a failed read gives). */
const GONE_FACTS: FileFacts = { sha256: null, contentMarkers: null };

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
/**
 * A content-marker scan that got no answer in time (the process's user keeps their scan line
 * full: a burst of launches, a file on their own stalled mount) is asked again after these waits
 * (ms; the last one repeats) for as long as the process runs the same program — no count limit:
 * a scan parked on the user's own stalled mount holds their line for as long as they like, and a
 * limit would let a copied banned bundle run for good once it was reached (it was 150 tries,
 * ~10 min; kept only where the source cannot tell a process ended, MARKER_RETRY_MAX_UNTRACKED).
 * One timer per such process, within SCRIPT_RETRY_PENDING_MAX; each try is one gate call. The observation without those markers was handed over already.
 */
const MARKER_RETRY_WAITS_MS = [100, 250, 500, 1000, 2000, 4000];
/**
 * Marker retries per process at most when the source cannot tell whether the process still runs
 * the same program (no `execedSince`: ps-list, eslogger, Windows): ~10 min at the last wait, so a
 * process gone long ago is not asked about for ever.
 */
const MARKER_RETRY_MAX_UNTRACKED = 150;
/** Retries (of either kind) waiting at most; beyond it a stalled lookup is counted and not retried (bounded memory). */
const SCRIPT_RETRY_PENDING_MAX = 10_000;
/**
 * Waits between looks for a loader's mapping of its program (ms): glibc's loader maps it within
 * a millisecond of starting, later on a busy machine; ~200 ms in all, then the observation goes
 * without hash and markers (names and paths still decide).
 */
const LOADER_MAPPING_WAITS_MS = [0, 2, 5, 10, 25, 50, 100];
/** `stop` waits this long for in-flight observations, so a stuck handler cannot hang shutdown (ms). */
const STOP_DRAIN_MS = 5000;

export class ProcessSensor implements Sensor {
  readonly name = 'process';
  private readonly log: Logger;
  private readonly configuredIntervalMs: number;
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
  /** A tick asked for while one ran: runs right after it ('scan' wins over 'wake'). */
  private queued: PollReason | null = null;
  private wakes = 0;
  private readonly inFlight = new Set<Promise<void>>();
  /**
   * In-flight reads of what the source handed over (not the retries, which wait on timers, nor
   * the handlers' promises, whose signals go out before their first wait).
   */
  private urgent = 0;
  /** A setImmediate that tells the source `settled` is queued. */
  private settling = false;
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private readonly skippedHere: Record<string, number> = {};
  private ticks = 0;
  private observed = 0;
  private lastTickMs = 0;
  private maxTickMs = 0;

  constructor(private readonly options: ProcessSensorOptions) {
    this.log = options.logger;
    this.configuredIntervalMs = options.intervalMs;
    this.selfPid = options.selfPid ?? process.pid;
    this.hasher = options.hasher ?? null;
    this.scripts = options.scripts ?? null;
    this.markerScanner = options.markers ?? null;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    // Listening starts before the first scan, so no exec falls between the two.
    this.options.source.listen?.(() => this.wake());
    await this.runTick();
    this.schedule();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.options.source.close?.();
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
    this.options.source.readAhead?.({
      walks: matcher.needs.scriptPackage,
      identities: matcher.needs.sha256 || matcher.needs.markers,
    });
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
        ...(this.options.source.listen ? { wakes: this.wakes } : {}),
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
        ...(this.options.fuse ? { fuse_exe: this.options.fuse.status() } : {}),
        ...this.options.source.details(),
      },
      skipped,
    };
  }

  /** The scan interval in force (ms): the configured one, or the source's default of the moment. */
  get intervalMs(): number {
    return this.configuredIntervalMs > 0 ? this.configuredIntervalMs : this.options.source.defaultIntervalMs;
  }

  /**
   * Runs one scan now (tests and `start`); resolves when every new process was handed over. During
   * a tick, the scan is queued to run right after it, and the promise covers both.
   */
  runTick(reason: PollReason = 'scan'): Promise<void> {
    if (this.ticking) {
      if (this.queued !== 'scan') this.queued = reason;
      return this.ticking;
    }
    this.ticking = (async () => {
      let next: PollReason | null = reason;
      try {
        while (next !== null) {
          this.queued = null;
          await this.tick(next);
          next = this.queued;
        }
      } finally {
        // Cleared in the same step that found nothing queued: a wake asked for after it starts a
        // new tick instead of queueing behind one that has already ended (it would be lost).
        this.ticking = null;
        this.maybeSettled();
      }
    })();
    return this.ticking;
  }

  /** A push source has processes to hand over: tick now (or right after the running tick). */
  private wake(): void {
    if (!this.running) return;
    this.wakes++;
    void this.runTick('wake');
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      void this.runTick().finally(() => this.schedule());
    }, this.intervalMs);
  }

  private async tick(reason: PollReason): Promise<void> {
    const started = performance.now();
    let fresh: RawProcess[];
    try {
      fresh = await this.options.source.poll(reason);
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

  /**
   * `file`: when set, the observation is of the program a dynamic loader runs, not of the
   * process's own executable, and `file.open` is the path that opens that program's mapped file
   * for hashing and scanning (null: not mapped, nothing to read).
   */
  private handle(raw: RawProcess, file?: { readonly open: string | null }, settled = false): void {
    // A uid the user directory cannot name yet (a directory user's first process): wait for its
    // lookup, bounded, off the scan, so exceptions see the user's name and groups.
    const wait =
      settled || raw.uid === null ? null : (this.options.users.settle?.(raw.uid, OWNER_WAIT_MS) ?? null);
    if (wait !== null) {
      this.count('owner_waits');
      this.detach(wait.then(() => this.handle(raw, file, true)));
      return;
    }
    const path =
      !this.needs.sha256 && !this.needs.markers ? null : file ? file.open : this.options.source.hashPath(raw);
    const hashPath = this.needs.sha256 ? path : null;
    const markerPath = this.needs.markers ? path : null;
    const interpreter = isInterpreter(raw.name) || (raw.exe !== null && isInterpreter(raw.exe));
    const script = this.needs.scriptPackage && interpreter;
    // A program already gone has no file left to hash or scan: opening /proc/<pid>/exe would fail
    // after three trips through the thread pool, and the observation would be handed over without
    // them, as it is here at once. Most short-lived programs are gone by the time their exec is
    // handled. Not for an interpreter, whose scripts are files of their own, nor for a loader's
    // program (its mapping was found: it ran). Gone, not "exec'd since": a process can rewrite the
    // image fields that tell an exec (`exited`) to have its file never read.
    const reads = !interpreter && file === undefined && (hashPath !== null || markerPath !== null);
    // What the file said, from the caches, when the source read its identity after the exec.
    const known = reads ? this.knownFacts(raw) : null;
    const gone = reads && known === null && this.options.source.exited?.(raw) === true;
    if (gone) this.count('file_reads_skipped_gone');
    // Nothing (left) to read from files: the observation is complete now.
    const complete = !script && (known !== null || gone || (hashPath === null && markerPath === null));
    let obs: ProcessObservation;
    try {
      obs = complete ? this.completeNow(raw, known ?? (gone ? GONE_FACTS : null)) : this.observe(raw);
    } catch (err) {
      this.count('observe_error');
      this.log.warn({ pid: raw.pid, err: errorMessage(err) }, 'could not build observation');
      return;
    }
    if (file === undefined && isDynamicLoader(raw.exe)) this.handleLoaded(raw);
    if (complete) {
      this.emit(obs);
      return;
    }
    // Hash and script package touch files the user controls: both run off the scan, through
    // safe-read's gates and deadlines, and the observation is handed over when both answered.
    this.detach(this.enrich(raw, obs, hashPath, script, markerPath).then((full) => this.emit(full)));
  }

  /**
   * The dynamic loader run as a program (dynamic-loader.ts): the program it runs is observed too,
   * as if it had been exec'd, under the loader's pid: its name and path from the loader's
   * argument (relative to the working directory), the argv from it on, and — when a rule needs the
   * file — its hash and markers read through the loader's mapping of it (the source's
   * `loadedProgram`: /proc/<pid>/map_files, so swapping the user's path after the mapping changes
   * nothing). An exec event arrives before the loader has mapped its program: the mapping is
   * looked for again a few times, LOADER_MAPPING_WAITS_MS apart.
   */
  private handleLoaded(raw: RawProcess): void {
    const prog = loadedProgram(raw.argv);
    if (!prog) return;
    let path = prog.path;
    if (!isAbsolute(path)) {
      const cwd = this.options.source.cwd(raw.pid, raw.tid);
      if (cwd === null) {
        this.count('loader_program_unresolved');
        return;
      }
      path = join(cwd, path);
    }
    path = normalize(path);
    this.count('loader_programs');
    const as: RawProcess = {
      ...raw,
      exe: path,
      name: basename(path),
      argv: raw.argv.slice(prog.index),
    };
    if (!this.needs.sha256 && !this.needs.markers) {
      this.handle(as, { open: null });
      return;
    }
    this.detach(
      this.loaderMapping(raw).then((open) => {
        if (open === null) this.count('loader_program_unmapped');
        this.handle(as, { open });
      }),
    );
  }

  /** The path that opens the program a loader process has mapped, or null (gone, never mapped). */
  private async loaderMapping(raw: RawProcess): Promise<string | null> {
    const find = this.options.source.loadedProgram;
    if (!find) return null;
    for (const wait of LOADER_MAPPING_WAITS_MS) {
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      // Gone; not "exec'd since", which the loaded program could fake by rewriting its image fields.
      if (!this.running || this.options.source.exited?.(raw)) return null;
      const found = find.call(this.options.source, raw);
      if (found) return found.openPath;
    }
    return null;
  }

  private async enrich(
    raw: RawProcess,
    obs: ProcessObservation,
    hashPath: string | null,
    script: boolean,
    markerPath: string | null = null,
  ): Promise<ProcessObservation> {
    const key = raw.uid ?? -1;
    let sha256: Promise<HashResult> | undefined;
    if (hashPath !== null) sha256 = this.exeHasher().hashResult(hashPath, key);
    let scriptPackage: Promise<ProcessObservation['scriptPackage']> | undefined;
    if (script) scriptPackage = this.lookupScript(raw, 0);
    const markers = markerPath !== null ? this.scanMarkers(raw, markerPath) : undefined;
    const hashed = sha256 !== undefined ? await sha256 : undefined;
    let hash = hashed?.sha256;
    if (hashed?.retry && hashPath !== null) this.retryHash(raw, hashPath, 0);
    const scanned = markers !== undefined ? await markers : undefined;
    let contentMarkers = scanned?.found;
    if (scanned?.stalled && markerPath !== null) this.retryMarkers(raw, markerPath, 0);
    // Read after the scan like the hash: another program's markers if the process exec'd since.
    const found = contentMarkers;
    if (
      found &&
      markerPath !== null &&
      (await this.runsAnother(raw, async () =>
        sameKeys((await this.scanMarkers(raw, markerPath))?.found, found),
      ))
    ) {
      this.count('markers_after_exec');
      contentMarkers = null;
    }
    // The hash was read after the scan: if the process exec'd in between, it is another program's
    // (the source reports the new program itself, with its own hash).
    const digest = hash;
    if (
      digest &&
      hashPath !== null &&
      (await this.runsAnother(raw, async () => (await this.exeHasher().hash(hashPath, key)) === digest))
    ) {
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

  /**
   * Whether `raw`'s process runs another program now than the one whose file was just read (its
   * facts are then dropped: the source reports that program itself). Changed image fields
   * (`execedSince`) alone do not say so: the process can rewrite them itself (prctl PR_SET_MM_MAP
   * needs no privilege) to have every fact read about it dropped. So while it runs, its file is
   * asked again — from the caches, by identity, when it is the same file (the exe of a running
   * process cannot be swapped while mapped) — and `same` says whether the answer is the one read.
   * A process that really exec'd before the first read keeps what its new program's file said: the
   * facts of what runs under the pid (its own exec is reported too).
   */
  private async runsAnother(raw: RawProcess, same: () => Promise<boolean>): Promise<boolean> {
    const source = this.options.source;
    if (!source.execedSince?.(raw)) return false;
    if (source.exited?.(raw) !== false) return true;
    return !(await same());
  }

  /**
   * The policy's markers in `raw`'s program (read at `path`) and, for an interpreter, in the files
   * on its command line: it runs their code, not its own (a copied or renamed bundle, an edited
   * package.json, `--import`). `stalled`: some scan got no answer in time (see retryMarkers).
   * Undefined when the policy has no markers.
   */
  private async scanMarkers(
    raw: RawProcess,
    path: string,
  ): Promise<{ found: readonly string[] | null; stalled: boolean } | undefined> {
    const automaton = this.matcher?.markers() ?? null;
    if (automaton === null) return undefined;
    this.markerScanner ??= new ContentMarkerScanner({
      cache: this.options.fileFacts?.markers,
      fuse: this.options.fuse ?? null,
    });
    const exe = this.markerScanner.scan(path, automaton, raw.uid ?? -1);
    const interpreter =
      raw.exe && isInterpreter(raw.exe) ? raw.exe : isInterpreter(raw.name) ? raw.name : null;
    if (interpreter === null) {
      const r = await exe;
      return { found: r.found, stalled: r.outcome === 'busy' || r.outcome === 'timeout' };
    }
    return this.withScriptMarkers(exe, interpreter, raw, automaton);
  }

  /** `exe` (the executable's scan) united with the markers of the files interpreter `raw` was told to run. */
  private async withScriptMarkers(
    exe: Promise<MarkerScanResult>,
    interpreter: string,
    raw: RawProcess,
    automaton: MarkerAutomaton,
  ): Promise<{ found: readonly string[] | null; stalled: boolean }> {
    this.scripts ??= new ScriptPackageResolver();
    const source = this.options.source;
    const [own, scripts] = await Promise.all([
      exe,
      scanScriptFiles(
        interpreter,
        {
          exe: raw.exe,
          name: raw.name,
          argv: raw.argv,
          uid: raw.uid,
          cwd: () => source.cwd(raw.pid, raw.tid),
          groups: () => source.groups?.(raw.pid, raw.tid) ?? null,
        },
        this.scripts,
        this.markerScanner as ContentMarkerScanner,
        automaton,
      ),
    ]);
    const stalled = scripts.stalled || own.outcome === 'busy' || own.outcome === 'timeout';
    if (scripts.found === null) return { found: own.found, stalled };
    return { found: [...new Set([...(own.found ?? []), ...scripts.found])], stalled };
  }

  /**
   * Asks the marker scan of `raw` again (attempt `attempt`, after MARKER_RETRY_WAITS_MS) while it
   * runs the same program; hands over an observation with the
   * markers once some are found, and asks again while a scan still gets no answer.
   */
  private retryMarkers(raw: RawProcess, path: string, attempt: number): void {
    this.retryRead(raw, attempt, 'markers', async () => {
      const r = await this.scanMarkers(raw, path);
      if (r === undefined || this.options.source.execedSince?.(raw)) return false;
      if (r.found !== null && r.found.length > 0) {
        this.emit({ ...this.observe(raw), contentMarkers: r.found });
        return false;
      }
      return r.stalled;
    });
  }

  /** The hasher, created on first use (sharing the file-facts cache and the FUSE reader). */
  private exeHasher(): ExeHasher {
    this.hasher ??= new ExeHasher({ cache: this.options.fileFacts?.hashes, fuse: this.options.fuse ?? null });
    return this.hasher;
  }

  /**
   * Asks the hash of `raw`'s executable again (attempt `attempt`, after MARKER_RETRY_WAITS_MS) while
   * it runs the same program, when a read as its owner found no free child or no answer in time
   * (HashResult.retry); hands over an observation with the hash once it decides something a rule
   * names by hash.
   */
  private retryHash(raw: RawProcess, path: string, attempt: number): void {
    this.retryRead(raw, attempt, 'hash', async () => {
      const r = await this.exeHasher().hashResult(path, raw.uid ?? -1);
      if (this.options.source.execedSince?.(raw)) return false;
      if (r.sha256 === null) return r.retry;
      const obs = { ...this.observe(raw), sha256: r.sha256 };
      if (this.matcher?.matchAll(obs).some((h) => h.reason === 'sha256')) this.emit(obs);
      return false;
    });
  }

  /**
   * Runs `ask` after MARKER_RETRY_WAITS_MS[attempt] (the last repeats) unless `raw` is gone or runs
   * another program by then (the source reports that one itself), and again, attempt + 1, when
   * it resolves true. Counted `<what>_retried`; `<what>_gave_up` when the pending retries are full,
   * or after MARKER_RETRY_MAX_UNTRACKED where the source cannot tell a process ended.
   */
  private retryRead(raw: RawProcess, attempt: number, what: string, ask: () => Promise<boolean>): void {
    if (!this.running) return;
    const untracked = this.options.source.execedSince === undefined;
    if (
      this.retryTimers.size >= SCRIPT_RETRY_PENDING_MAX ||
      (untracked && attempt >= MARKER_RETRY_MAX_UNTRACKED)
    ) {
      this.count(`${what}_gave_up`);
      return;
    }
    this.count(`${what}_retried`);
    const waits = this.options.markerRetryWaitsMs ?? MARKER_RETRY_WAITS_MS;
    const wait = waits[Math.min(attempt, waits.length - 1)] as number;
    const t = setTimeout(() => {
      this.retryTimers.delete(t);
      if (!this.running || this.options.source.execedSince?.(raw)) return;
      this.detach(
        ask().then((again) => {
          if (again) this.retryRead(raw, attempt + 1, what, ask);
        }),
        false,
      );
    }, wait);
    this.retryTimers.add(t);
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
      // the walk read right after the exec (a retry, later, walks afresh)
      attempt === 0 ? (source.walked?.(raw) ?? null) : null,
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
          this.emit(this.observe(raw, { scriptPackage: pkg }));
        }),
        false,
      );
    }, SCRIPT_RETRY_MS);
    this.retryTimers.add(t);
  }

  /**
   * The observation of `raw` with nothing to read from files: no script package when one is
   * needed, and, when it is `gone`, no hash and no markers where a rule needs them (what enrich
   * hands over when the file could not be opened).
   */
  private completeNow(raw: RawProcess, facts: FileFacts | null): ProcessObservation {
    return this.observe(raw, {
      scriptPackage: this.needs.scriptPackage ? null : undefined,
      sha256: this.needs.sha256 ? facts?.sha256 : undefined,
      contentMarkers: this.needs.markers ? facts?.contentMarkers : undefined,
    });
  }

  /**
   * The hash and markers of `raw`'s executable the rules need, when the caches have them for the
   * identity the source read right after its exec (counted `file_facts_cached`); null when any is
   * missing (no identity, never read): then the file is read.
   */
  private knownFacts(raw: RawProcess): FileFacts | null {
    const identity = this.options.source.exeIdentity?.(raw) ?? null;
    if (identity === null) return null;
    let sha256: string | undefined;
    if (this.needs.sha256) {
      sha256 = this.hasher?.cachedHash(identity);
      if (sha256 === undefined) return null;
    }
    let contentMarkers: readonly string[] | undefined;
    if (this.needs.markers) {
      const automaton = this.matcher?.markers() ?? null;
      if (automaton === null) return null;
      contentMarkers = this.markerScanner?.cachedScan(identity, automaton);
      if (contentMarkers === undefined) return null;
    }
    this.count('file_facts_cached');
    return { sha256, contentMarkers };
  }

  /**
   * The observation of `raw`, with the `facts` given (the defined ones). Optional fields are added to the
   * literal, not spread into it: this runs for every exec, and a spread of varying shapes took
   * V8's slow path each time.
   */
  private observe(
    raw: RawProcess,
    facts?: Pick<ProcessObservation, 'scriptPackage' | 'sha256' | 'contentMarkers'>,
  ): ProcessObservation {
    const owner =
      raw.uid === null ? { uid: -1, user: null, groups: [], home: null } : this.options.users.owner(raw.uid);
    const obs: { -readonly [K in keyof ProcessObservation]: ProcessObservation[K] } = {
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
    if (raw.signing) obs.signing = raw.signing;
    if (raw.execNs !== undefined) obs.execNs = raw.execNs;
    if (facts?.scriptPackage !== undefined) obs.scriptPackage = facts.scriptPackage;
    if (facts?.sha256 !== undefined) obs.sha256 = facts.sha256;
    if (facts?.contentMarkers !== undefined) obs.contentMarkers = facts.contentMarkers;
    return obs;
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
    if (r && typeof (r as Promise<void>).then === 'function') this.detach(r as Promise<void>, false);
  }

  /** `urgent`: a read of what the source handed over (false: a retry, a handler), see `maybeSettled`. */
  private detach(p: Promise<void>, urgent = true): void {
    if (urgent) this.urgent++;
    const tracked: Promise<void> = p
      .catch((err: unknown) => {
        this.count('handler_error');
        this.log.error({ err: errorMessage(err) }, 'observation handler failed');
      })
      .finally(() => {
        this.inFlight.delete(tracked);
        if (urgent) {
          this.urgent--;
          this.maybeSettled();
        }
      });
    this.inFlight.add(tracked);
  }

  /**
   * Tells the source, once no tick runs and nothing it handed over is still being read, in a
   * setImmediate — after the promise jobs of the handlers that observation started, where a
   * block's signals go out (its notification waits, its event is written after) — that what it
   * handed over is handled: the exec-events source lowers the JS thread its reader raised for the
   * hand-over (native/procevents/boost.c).
   */
  private maybeSettled(): void {
    if (this.settling || this.urgent !== 0 || this.ticking !== null || !this.options.source.settled) return;
    this.settling = true;
    setImmediate(() => {
      this.settling = false;
      if (this.urgent === 0 && this.ticking === null) this.options.source.settled?.();
    });
  }

  private count(reason: string): void {
    this.skippedHere[reason] = (this.skippedHere[reason] ?? 0) + 1;
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** Whether two lists of marker keys hold the same keys. */
function sameKeys(a: readonly string[] | null | undefined, b: readonly string[]): boolean {
  if (!a || a.length !== b.length) return false;
  const set = new Set(a);
  return b.every((k) => set.has(k));
}
