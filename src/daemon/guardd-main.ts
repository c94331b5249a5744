/**
 * Owns guardd's entry point: flags, config loading (bad config → one clear line and exit 6, no
 * stack trace), building the daemon through the composition root, signals (SIGINT/SIGTERM stop
 * cleanly, SIGHUP re-fetches the policy) and the exit code.
 */
import { parseArgs } from 'node:util';
import { isGuardError } from '../common/errors.js';
import { createRootLogger, type Logger } from '../common/logger.js';
import { defaultPaths } from '../common/platform-paths.js';
import { AGENT_VERSION } from '../common/version.js';
import { loadConfig } from '../config/load-config.js';
import { buildDaemon, type Daemon } from './deps.js';
import { prepareLocalMode } from './local-mode.js';
import { raisePriority } from './priority.js';

const USAGE = `usage: guardd [--config FILE] [--local [--local-dir DIR] [--local-policy FILE] [--enforce]] [--version]

  --config FILE     config file (default: ${defaultPaths().configFile})
  --local           run in the foreground with state in ./.toolguard, an embedded guard-collector
                    on 127.0.0.1 and the example ban list signed by a local development key (what
                    \`npm start\` runs). It acts only on processes started after it, only on your
                    own (as root: on none, see --enforce), and on packages only under its own
                    directory; anything else it matches is reported as "would block"
  --local-dir DIR   state directory of --local (default ./.toolguard)
  --local-policy FILE  unsigned policy body --local signs and enforces (default policy/example-policy.json)
  --enforce         with --local as root: stop matching processes that ANY user starts from now on
                    (without it, root only reports)
  --version         print the version and exit

Exit codes: 0 stopped cleanly · 1 unexpected error · 2 usage error · 6 config invalid`;

export async function main(argv: readonly string[]): Promise<number> {
  let flags: ReturnType<typeof parse>;
  try {
    flags = parse(argv);
  } catch (err) {
    process.stderr.write(`guardd: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (flags.version) {
    process.stdout.write(`guardd ${AGENT_VERSION}\n`);
    return 0;
  }
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (flags.enforce && !flags.local) {
    process.stderr.write(`guardd: --enforce only applies to --local\n${USAGE}\n`);
    return 2;
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
  try {
    const local = flags.local
      ? await prepareLocalMode({
          dir: flags['local-dir'] ?? '.toolguard',
          logger: createRootLogger('warn'),
          enforce: flags.enforce === true,
          ...(flags['local-policy'] ? { policyBodyFile: flags['local-policy'] } : {}),
        })
      : null;
    const config = loadConfig({
      file: flags.config ?? local?.configFile ?? defaultPaths().configFile,
      required: flags.config !== undefined || local !== null,
    });
    logger = createRootLogger(config['log.level']);
    raisePriority(logger);
    daemon = await buildDaemon({ config, logger, local });
    await daemon.start();
  } catch (err) {
    if (isGuardError(err)) {
      process.stderr.write(`guardd: ${err.message} [${err.code}]\n`);
      await daemon?.stop('start_failed').catch(() => {});
      return err.code.startsWith('GUARD_CONFIG_') ? 6 : 1;
    }
    logger?.fatal({ err }, 'guardd failed to start');
    process.stderr.write(`guardd: failed to start: ${(err as Error).message}\n`);
    await daemon?.stop('start_failed').catch(() => {});
    return 1;
  }

  const running = daemon;
  const log = logger;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      running.stop(signal).then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, 'unclean stop');
          resolve(1);
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

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    options: {
      config: { type: 'string' },
      local: { type: 'boolean' },
      'local-dir': { type: 'string' },
      'local-policy': { type: 'string' },
      enforce: { type: 'boolean' },
      version: { type: 'boolean', short: 'V' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  }).values;
}
