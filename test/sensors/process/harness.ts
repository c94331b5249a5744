/**
 * Shared setup of the process tests: the real pipeline (procfs source → ProcessSensor →
 * compiled matcher → Enforcer with the real block/notify actions → memory event sink), banned
 * fixtures that are unique per run (a copy of `sleep` with a random trailer, so its hash matches
 * nothing else on this shared machine, and a JS CLI package with a random name), and child
 * process bookkeeping so every process a test starts is reaped or killed at the end.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { silentLogger } from '../../../src/common/logger.js';
import { BlockProcessAction } from '../../../src/enforcement/actions/block-process.js';
import { NotifyProcessAction } from '../../../src/enforcement/actions/notify-process.js';
import { Enforcer } from '../../../src/enforcement/enforcer.js';
import type {
  NotifyMessage,
  NotifyResult,
  NotifyTarget,
  UserNotifier,
} from '../../../src/enforcement/notifier.js';
import { compileMatcher } from '../../../src/policy/matcher.js';
import type { PolicyBody, PolicyRule } from '../../../src/policy/policy-types.js';
import type { ContentMarkerScanner } from '../../../src/sensors/content-markers.js';
import type { ProcessObservation } from '../../../src/sensors/observation.js';
import { ProcessSensor } from '../../../src/sensors/process-sensor.js';
import type { ProcessControl } from '../../../src/sensors/process-sources/process-control.js';
import type { ProcessSource } from '../../../src/sensors/process-sources/process-source.js';
import { ProcfsSource } from '../../../src/sensors/process-sources/procfs-source.js';
import type { ScriptPackageResolver } from '../../../src/sensors/script-package.js';
import { MemoryEventSink } from '../../helpers/event-sink.js';

/** A notifier that records what it was asked (the real one is tested in test/enforcement). */
export class RecordingNotifier implements UserNotifier {
  readonly calls: { target: NotifyTarget; message: NotifyMessage }[] = [];
  async notify(target: NotifyTarget, message: NotifyMessage): Promise<NotifyResult> {
    this.calls.push({ target, message });
    return { terminal: false, desktop: false, error: null };
  }
}

export function policy(
  rules: PolicyRule[],
  mode: 'enforce' | 'monitor' = 'enforce',
  version = 1,
): PolicyBody {
  return {
    schema: 'toolguard.policy/v1',
    version,
    issued_at: '2026-11-24T00:00:00Z',
    expires_at: '2099-01-01T00:00:00Z',
    mode,
    rules,
  };
}

export interface Pipeline {
  readonly sensor: ProcessSensor;
  readonly events: MemoryEventSink;
  readonly enforcer: Enforcer;
  readonly notifier: RecordingNotifier;
  readonly observed: ProcessObservation[];
  stop(): Promise<void>;
}

/** Builds and starts the real pipeline on a source (default: the real /proc). */
export async function startPipeline(
  body: PolicyBody,
  opts: {
    source?: ProcessSource;
    intervalMs?: number;
    keepObservations?: boolean;
    notifier?: UserNotifier;
    scripts?: ScriptPackageResolver;
    markers?: ContentMarkerScanner;
    /** Waits between content-marker retries (ms; default the sensor's). */
    markerRetryWaitsMs?: readonly number[];
    /** How the block action checks identity and signals (default: this OS's). */
    control?: ProcessControl;
    /** The platform the matcher is compiled for (default linux). */
    platform?: 'linux' | 'darwin' | 'win32';
  } = {},
): Promise<Pipeline> {
  const logger = silentLogger();
  const events = new MemoryEventSink();
  const recording = new RecordingNotifier();
  const notifier = opts.notifier ?? recording;
  const enforcer = new Enforcer({
    actions: {
      blockProcess: new BlockProcessAction({
        notifier,
        logger,
        ...(opts.control ? { control: opts.control } : {}),
      }),
      notifyProcess: new NotifyProcessAction({ notifier, logger }),
      quarantine: { execute: async () => ({ actionTaken: 'skipped', latencyMs: 0, error: 'n/a' }) },
      notifyInstall: { execute: async () => ({ actionTaken: 'skipped', latencyMs: 0, error: 'n/a' }) },
    },
    events,
    logger,
    warnIntervalMs: 0,
  });
  const matcher = compileMatcher(body, { platform: opts.platform ?? 'linux', homes: [] });
  const ctx = { now: Date.now(), hostname: 'test-host', deviceTags: [] };
  const observed: ProcessObservation[] = [];
  const sensor = new ProcessSensor({
    source: opts.source ?? new ProcfsSource(),
    users: { owner: (uid) => ({ uid, user: uid === 0 ? 'root' : `u${uid}`, groups: [], home: null }) },
    intervalMs: opts.intervalMs ?? 50,
    logger,
    ...(opts.scripts ? { scripts: opts.scripts } : {}),
    ...(opts.markers ? { markers: opts.markers } : {}),
    ...(opts.markerRetryWaitsMs ? { markerRetryWaitsMs: opts.markerRetryWaitsMs } : {}),
    onObservation: async (obs) => {
      if (obs.kind !== 'process') return;
      if (opts.keepObservations) observed.push(obs);
      const decision = matcher.match(obs, ctx);
      if (decision) await enforcer.handle(obs, decision);
    },
  });
  sensor.setMatcher(matcher);
  await sensor.start();
  return { sensor, events, enforcer, notifier: recording, observed, stop: () => sensor.stop() };
}

/** Every child started through `launch` is killed (if still running) when the test file ends. */
const children = new Set<ChildProcess>();
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

export interface Launched {
  readonly child: ChildProcess;
  /** Resolves with the exit signal (or code) once the child is gone. */
  readonly exited: Promise<NodeJS.Signals | number | null>;
}

export function launch(
  command: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
  cwd?: string,
  stdio: 'ignore' | 'pipe' = 'ignore',
  as?: { uid: number; gid: number },
): Launched {
  const child = spawn(command, args, {
    stdio,
    env: env ?? process.env,
    ...(cwd ? { cwd } : {}),
    ...(as ? { uid: as.uid, gid: as.gid } : {}),
  });
  children.add(child);
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => {
    child.once('exit', (code, signal) => resolve(signal ?? code));
    child.once('error', () => resolve(null));
  });
  return { child, exited };
}

/** Whether a pid is alive and not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export interface BannedFixtures {
  /** Unique tool name (≤ 15 chars so it is also the comm). */
  readonly tool: string;
  /** Directory holding the banned binary `tool` (put it on PATH). */
  readonly binDir: string;
  /** The banned binary: a copy of sleep with a random trailer (unique hash). */
  readonly binary: string;
  readonly sha256: string;
  /** The banned JS CLI package name and its bin name. */
  readonly pkg: string;
  readonly pkgBin: string;
  /** Two global prefixes with the package installed (lib/node_modules/<pkg>, bin/<pkgBin>). */
  readonly prefixes: readonly string[];
  /** An `npm pack` tarball of the package. */
  readonly tarball: string;
  /** The rule banning all of it. */
  readonly rule: PolicyRule;
}

/** Creates the banned binary and JS package under `dir`. */
export function makeBannedFixtures(
  dir: string,
  action: 'block' | 'warn' | 'audit' = 'block',
): BannedFixtures {
  const hex = randomBytes(4).toString('hex');
  const tool = `tgb${hex}`;
  const binDir = join(dir, 'bin');
  mkdirSync(binDir, { recursive: true });
  const binary = join(binDir, tool);
  copyFileSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), binary);
  // Trailing bytes after an ELF image are ignored by the loader and make this copy's hash unique.
  appendFileSync(binary, randomBytes(64));
  chmodSync(binary, 0o755);
  const sha256 = createHash('sha256').update(readFileSync(binary)).digest('hex');

  const pkg = `@tg-test/banned-${hex}`;
  const pkgBin = `tgjs${hex}`;
  const src = join(dir, 'pkg-src');
  mkdirSync(src, { recursive: true });
  writeFileSync(
    join(src, 'package.json'),
    JSON.stringify({ name: pkg, version: '1.0.0', bin: { [pkgBin]: 'cli.js' } }),
  );
  // Stays alive until killed; 60 s bounds a leak if a test fails before its cleanup.
  writeFileSync(join(src, 'cli.js'), '#!/usr/bin/env node\nsetTimeout(() => {}, 60000);\n');
  chmodSync(join(src, 'cli.js'), 0o755);
  const out = execFileSync('npm', ['pack', '--pack-destination', dir, '--json'], {
    cwd: src,
    encoding: 'utf8',
    env: { ...process.env, npm_config_cache: join(dir, 'npm-cache') },
  });
  const tarball = join(dir, (JSON.parse(out) as { filename: string }[])[0]?.filename ?? '');
  const prefixes = ['prefix-a', 'prefix-b'].map((p) => join(dir, p));
  for (const prefix of prefixes) {
    const root = join(prefix, 'lib', 'node_modules', pkg);
    mkdirSync(root, { recursive: true });
    for (const f of ['package.json', 'cli.js']) copyFileSync(join(src, f), join(root, f));
    chmodSync(join(root, 'cli.js'), 0o755);
    mkdirSync(join(prefix, 'bin'), { recursive: true });
    execFileSync('ln', ['-s', join(root, 'cli.js'), join(prefix, 'bin', pkgBin)]);
  }
  const rule: PolicyRule = {
    id: `banned-${hex}`,
    name: 'Banned Tool',
    action,
    message: 'Banned Tool is not approved on company machines.',
    url: 'https://intranet.example/ai-tools',
    process: { names: [tool], sha256: [sha256], script_packages: [pkg] },
  };
  return { tool, binDir, binary, sha256, pkg, pkgBin, prefixes, tarball, rule };
}
