/**
 * Owns guardd's entry point: flags (guardd-program.ts, parsed like guardctl's), config loading
 * (bad config → one clear line, a hint and exit 6, no stack trace; errors are printed and mapped
 * to exit codes by the one table in src/cli/error-message.ts), building the daemon through the
 * composition root, signals (SIGINT/SIGTERM stop cleanly, SIGHUP re-fetches the policy) and the
 * exit code (a stopped guardd, or one whose start failed, exits within EXIT_GRACE_MS even when a
 * leaked handle would keep it). A guardd already running is left alone: a second one exits before
 * it touches any of its state — GUARD_CONTROL_SOCKET_IN_USE when one answers on the control
 * sockets, GUARD_CONTROL_INSTANCE_LOCKED when one holds the state dir's lock (instance-lock.ts: it
 * may still be starting, so it does not answer yet).
 */
import { createProgram, reportError, startFailure } from '../cli/program.js';
import { GuardError } from '../common/errors.js';
import { createRootLogger, type Logger } from '../common/logger.js';
import { defaultPaths } from '../common/platform-paths.js';
import { exitAfterGrace, exitNow } from '../common/quick-exit.js';
import { loadConfig } from '../config/load-config.js';
import { assertNoDaemonAnswers } from '../control/control-server.js';
import { buildDaemon, type Daemon } from './deps.js';
import { GUARDD_PROGRAM } from './guardd-program.js';
import { holdInstanceLock, type InstanceLock } from './instance-lock.js';
import {
  LOCAL_DIR_OPTIONS,
  type LocalMode,
  localSocketDir,
  localStateDir,
  prepareLocalMode,
} from './local-mode.js';
import { raisePriority } from './priority.js';

/** How long a stopped guardd may take to exit on its own before it exits by force (ms). */
const EXIT_GRACE_MS = 2000;

interface Flags {
  config?: string;
  local?: boolean;
  localDir?: string;
  localPolicy?: string;
  enforce?: boolean;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = createProgram(GUARDD_PROGRAM);
  let flags: Flags;
  try {
    const ended = program.parseSync(argv);
    if (ended !== null) return ended;
    flags = program.command.opts<Flags>();
    if (flags.enforce && !flags.local)
      throw new GuardError('GUARD_CLI_USAGE', '--enforce only applies to --local');
    // Without root guardd can neither see nor stop other users' processes, nor open its own
    // root-only state: refused before anything is touched, with how to run it instead.
    const uid = process.getuid?.();
    if (!flags.local && uid !== undefined && uid !== 0)
      throw new GuardError(
        'GUARD_CLI_PERMISSION_DENIED',
        "needs root: it acts on every user's processes and keeps root-only state",
        { root: false },
      );
  } catch (err) {
    return reportError(err, { program: 'guardd' });
  }

  // Signals are heard from here on: a SIGTERM while guardd is still starting (sensors' first scans
  // can take seconds) must not kill it with the default action, which would skip the clean stop
  // (agent.stopped sent, DB closed). It is held and acted on once the start finished.
  let pendingSignal: string | null = null;
  let onStopSignal: ((signal: string) => void) | null = null;
  const heard = (signal: string): void => {
    if (onStopSignal) onStopSignal(signal);
    else pendingSignal ??= signal;
  };
  process.on('SIGINT', () => heard('SIGINT'));
  process.on('SIGTERM', () => heard('SIGTERM'));

  let logger: Logger | undefined;
  let daemon: Daemon | undefined;
  let local: LocalMode | null = null;
  let configFile: string | undefined;
  // Held for the life of the process (its end lets it go).
  let instanceLock: InstanceLock | null = null;
  try {
    // A guardd already running on these sockets or this state dir is left alone: checked before
    // local mode rewrites its files and before the state database, quarantine or pre-exec listener
    // are touched.
    const localDir = flags.localDir ?? '.toolguard';
    if (flags.local) {
      await assertNoDaemonAnswers(localSocketDir(localDir));
      instanceLock = holdInstanceLock(localStateDir(localDir), LOCAL_DIR_OPTIONS);
    }
    local = flags.local
      ? await prepareLocalMode({
          dir: localDir,
          logger: createRootLogger('warn'),
          enforce: flags.enforce === true,
          ...(flags.localPolicy ? { policyBodyFile: flags.localPolicy } : {}),
        })
      : null;
    configFile = flags.config ?? local?.configFile ?? defaultPaths().configFile;
    const config = loadConfig({
      file: configFile,
      required: flags.config !== undefined || local !== null,
    });
    await assertNoDaemonAnswers(config['paths.socket_dir']);
    instanceLock ??= holdInstanceLock(config['paths.state_dir']);
    logger = createRootLogger(config['log.level']);
    raisePriority(logger);
    daemon = await buildDaemon({ config, logger, local });
    await daemon.start();
  } catch (err) {
    const failure = startFailure(err);
    if (failure.code === 'GUARD_CLI_START_FAILED') logger?.fatal({ err }, 'guardd failed to start');
    if (daemon) await daemon.stop('start_failed').catch(() => {});
    // built or not, local mode's embedded collector is guardd's to close
    else await local?.collector.close().catch(() => {});
    instanceLock?.release();
    const code = reportError(failure, { program: 'guardd', configFile });
    // a handle left open by the failed start (a leak) must not keep it from exiting
    exitAfterGrace(code, EXIT_GRACE_MS);
    return code;
  }

  const running = daemon;
  const log = logger;
  const lock = instanceLock;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      const exitSoon = (code: number): void => {
        // Everything guardd owns is stopped; a handle still open after this (a leak) must not keep
        // the stopped daemon alive: name it, then exit.
        setTimeout(() => {
          log.error({ resources: process.getActiveResourcesInfo() }, 'still running after stop; exiting');
          // not process.exit: a pool thread stuck in a user's FUSE mount would hold it (quick-exit.ts)
          exitNow(code);
        }, EXIT_GRACE_MS).unref();
        resolve(code);
      };
      running.stop(signal).then(
        () => {
          lock?.release();
          exitSoon(0);
        },
        (err: unknown) => {
          log.error({ err }, 'unclean stop');
          exitSoon(1);
        },
      );
    };
    process.on('SIGHUP', () => {
      running.refreshPolicy().catch((err: unknown) => log.error({ err }, 'policy refresh failed'));
    });
    onStopSignal = stop;
    if (pendingSignal) stop(pendingSignal);
  });
}
