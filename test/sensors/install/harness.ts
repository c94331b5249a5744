/**
 * Test rig for the install sensor: a real SQLite state DB, the real quarantine store and actions,
 * the real enforcer and matcher, a MemoryEventSink, and a recording notifier (notification is not
 * what these tests check). Plus helpers to build npm / pnpm / yarn layouts.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { silentLogger } from '../../../src/common/logger.js';
import { UserDirectory } from '../../../src/common/users.js';
import type { ActionResult } from '../../../src/enforcement/action.js';
import { NotifyInstallAction } from '../../../src/enforcement/actions/notify-install.js';
import { QuarantineAction } from '../../../src/enforcement/actions/quarantine.js';
import { Enforcer } from '../../../src/enforcement/enforcer.js';
import type {
  NotifyMessage,
  NotifyResult,
  NotifyTarget,
  UserNotifier,
} from '../../../src/enforcement/notifier.js';
import { QuarantineStore } from '../../../src/enforcement/quarantine-store.js';
import type { AgentEvent } from '../../../src/events/event-types.js';
import { compileMatcher, type Matcher } from '../../../src/policy/matcher.js';
import type { PolicyBody, PolicyMode, RuleAction } from '../../../src/policy/policy-types.js';
import { InstallSensor } from '../../../src/sensors/install-sensor.js';
import type { Observation } from '../../../src/sensors/observation.js';
import { openDatabase } from '../../../src/store/database.js';
import { MIGRATIONS } from '../../../src/store/migrations.js';
import { MemoryEventSink } from '../../helpers/event-sink.js';
import { waitFor } from '../../helpers/wait.js';

const execFileP = promisify(execFile);

export const BANNED = '@anthropic-ai/claude-code';
export const BANNED_UNSCOPED = 'banned-tool';
export const FIXTURE = join(import.meta.dirname, '../../fixtures/install/claude-code-fake');

export function policyBody(action: RuleAction, version = 1, mode: PolicyMode = 'enforce'): PolicyBody {
  return {
    schema: 'toolguard.policy/v1',
    version,
    issued_at: '2026-01-01T00:00:00Z',
    expires_at: '2099-01-01T00:00:00Z',
    mode,
    rules: [
      {
        id: 'claude-code',
        name: 'Claude Code',
        action,
        message: 'Claude Code is not approved on company machines.',
        url: 'https://intranet.example/ai-tools',
        packages: [
          { ecosystem: 'npm', name: BANNED, range: '*' },
          { ecosystem: 'npm', name: BANNED_UNSCOPED, range: '*' },
        ],
        paths: ['~/.local/share/claude/versions/*'],
      },
    ],
  };
}

export class RecordingNotifier implements UserNotifier {
  readonly calls: { target: NotifyTarget; message: NotifyMessage }[] = [];
  async notify(target: NotifyTarget, message: NotifyMessage): Promise<NotifyResult> {
    this.calls.push({ target, message });
    return { terminal: false, desktop: true, error: null };
  }
}

export interface RigOptions {
  readonly dir: string;
  readonly homes?: readonly string[];
  readonly extraRoots?: readonly string[];
  readonly action?: RuleAction;
  readonly mode?: PolicyMode;
  readonly quarantineDir?: string;
  /** Runs between detection and enforcement (TOCTOU tests). */
  readonly beforeEnforce?: (obs: Observation) => Promise<void> | void;
  readonly start?: boolean;
  /** node-cron schedule of full rescans (default: once a year, i.e. never during a test). */
  readonly rescanCron?: string;
}

export interface Rig {
  readonly sensor: InstallSensor;
  readonly sink: MemoryEventSink;
  readonly store: QuarantineStore;
  readonly notifier: RecordingNotifier;
  readonly observations: Observation[];
  readonly results: ActionResult[];
  matcher: Matcher;
  close(): Promise<void>;
}

/** The first `package.warned` event of the package at `path` in `rig`'s sink, waited for (25 s at most). */
export function warnedAt(rig: Pick<Rig, 'sink'>, path: string, what: string): Promise<AgentEvent> {
  return waitFor(
    () =>
      rig.sink
        .ofType('package.warned')
        .find((e) => (e as { package?: { path?: string } }).package?.path === path),
    what,
    { timeoutMs: 25_000 },
  );
}

/** The real enforcer with the install actions (quarantine, notify) on `store`; process actions do nothing. */
export function installEnforcer(
  store: QuarantineStore,
  notifier: UserNotifier,
  sink: MemoryEventSink,
): Enforcer {
  const logger = silentLogger();
  const noop = { execute: async () => ({ actionTaken: 'skipped' as const, latencyMs: 0, error: null }) };
  return new Enforcer({
    actions: {
      blockProcess: noop,
      notifyProcess: noop,
      quarantine: new QuarantineAction({ store, notifier, logger }),
      notifyInstall: new NotifyInstallAction({ notifier, logger }),
    },
    events: sink,
    logger,
    warnIntervalMs: 0,
  });
}

export async function makeRig(o: RigOptions): Promise<Rig> {
  const homes = o.homes ?? [];
  const { db } = openDatabase(join(o.dir, 'state', 'state.db'), {
    migrations: MIGRATIONS,
    synchronous: 'NORMAL',
  });
  const logger = silentLogger();
  const store = new QuarantineStore({
    db,
    quarantineDir: o.quarantineDir ?? join(o.dir, 'state', 'quarantine'),
    logger,
  });
  await store.init();
  await store.recover();
  const notifier = new RecordingNotifier();
  const sink = new MemoryEventSink();
  const enforcer = installEnforcer(store, notifier, sink);
  const observations: Observation[] = [];
  const results: ActionResult[] = [];
  const inflight = new Set<Promise<unknown>>();
  const rig: Rig = {
    sensor: undefined as unknown as InstallSensor,
    sink,
    store,
    notifier,
    observations,
    results,
    matcher: compileMatcher(policyBody(o.action ?? 'block', 1, o.mode ?? 'enforce'), {
      platform: 'linux',
      homes,
    }),
    async close() {
      await rig.sensor.stop();
      await Promise.allSettled([...inflight]);
      db.close();
    },
  };
  const sensor = new InstallSensor({
    users: new UserDirectory({ platform: 'linux' }),
    platform: 'linux',
    rescanCron: o.rescanCron ?? '0 0 1 1 *',
    extraRoots: o.extraRoots ?? [],
    homes,
    systemRoots: false,
    logger,
    onObservation: async (obs) => {
      observations.push(obs);
      const decision = rig.matcher.match(obs, { now: Date.now(), hostname: 'test-host', deviceTags: [] });
      if (!decision) return;
      const p = (async () => {
        await o.beforeEnforce?.(obs);
        results.push(await enforcer.handle(obs, decision));
      })();
      inflight.add(p);
      await p;
    },
  });
  (rig as { sensor: InstallSensor }).sensor = sensor;
  sensor.setMatcher(rig.matcher);
  if (o.start !== false) await sensor.start();
  return rig;
}

/** `npm pack` of the fixture into `outDir`; returns the tarball path. */
export function packFixture(outDir: string, fixture = FIXTURE): string {
  mkdirSync(outDir, { recursive: true });
  execFileSync('npm', ['pack', fixture, '--pack-destination', outDir, '--silent'], { stdio: 'pipe' });
  const tgz = readdirSync(outDir).find((f) => f.endsWith('.tgz'));
  if (!tgz) throw new Error('npm pack produced no tarball');
  return join(outDir, tgz);
}

/** `npm install -g --prefix <prefix> <tarball>` offline; resolves when npm exits 0. */
export async function npmInstallGlobal(prefix: string, tarball: string): Promise<void> {
  await execFileP(
    'npm',
    ['install', '-g', '--prefix', prefix, tarball, '--offline', '--no-audit', '--no-fund'],
    {
      timeout: 60_000,
      env: { ...process.env, npm_config_loglevel: 'error' },
    },
  );
}

/** Writes a package directory by hand (for pnpm/yarn layouts and hostile trees). */
export function writePackage(
  dir: string,
  manifest: Record<string, unknown> | string,
  files: Record<string, string> = {},
): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'package.json'),
    typeof manifest === 'string' ? manifest : JSON.stringify(manifest),
  );
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  if (files['cli.js'] !== undefined) chmodSync(join(dir, 'cli.js'), 0o755);
}

export function link(target: string, path: string): void {
  mkdirSync(dirname(path), { recursive: true });
  symlinkSync(target, path);
}

export const FAKE_MANIFEST = { name: BANNED, version: '1.0.99', bin: { claude: 'cli.js' } };
export const FAKE_FILES = {
  'cli.js': '#!/usr/bin/env node\nconsole.log("fake")\n',
  'vendor/x.txt': 'payload\n',
};

/**
 * A banned package whose postinstall keeps touching a file in its own directory from its first
 * millisecond (a shell loop, detached from npm's pipes, ending when the directory is gone or after
 * 60 s), so the sensor mostly does not see it settle, then runs `node install.js`: the banned
 * script guardd's process rules kill (its pid goes to $TGIN_PIDFILE, for tests that kill it
 * themselves). Not a promise: npm links the bins before the script starts, and on a loaded
 * machine the tree can stay still for longer than SETTLE_MS (before the first touch, while the
 * loop is starved, once the script is killed), and the sensor then reports the installed package.
 * A test that needs it not reported holds the owner's read slot (reverted-install.test.ts) and
 * leaves the loop out (`keepWriting: false`): a touch between npm's rollback emptying the
 * directory and removing it can make that removal fail (ENOTEMPTY), and npm leaves the package.
 */
export function writeSlowPostinstallPackage(
  dir: string,
  name: string = BANNED_UNSCOPED,
  { keepWriting = true }: { keepWriting?: boolean } = {},
): void {
  writePackage(
    dir,
    {
      name,
      version: '2.0.0',
      bin: { [name]: 'cli.js' },
      scripts: { postinstall: 'sh install.sh' },
    },
    {
      'cli.js': '#!/usr/bin/env node\nconsole.log("banned")\n',
      'install.sh': [
        ...(keepWriting
          ? [
              'i=0',
              '(while [ $i -lt 3000 ] && touch tick 2>/dev/null; do i=$((i+1)); sleep 0.02; done) </dev/null >/dev/null 2>&1 &',
            ]
          : []),
        'exec node install.js',
        '',
      ].join('\n'),
      'install.js': [
        "const fs = require('node:fs');",
        'if (process.env.TGIN_PIDFILE) fs.writeFileSync(process.env.TGIN_PIDFILE, String(process.pid));',
        'setInterval(() => {}, 1000);',
        '',
      ].join('\n'),
    },
  );
}
