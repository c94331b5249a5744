/**
 * Owns guardd's command line as data (options, examples, exit codes): guardd-main.ts parses it
 * with the shared program setup (src/cli/program.ts) and cli-reference.ts generates guardd(8)
 * and its completions from it.
 */
import type { ProgramSpec } from '../cli/program.js';
import { defaultPaths } from '../common/platform-paths.js';

export const GUARDD_PROGRAM: ProgramSpec = {
  name: 'guardd',
  summary: 'The toolguard endpoint daemon: keeps banned developer tools off this machine',
  description:
    'guardd watches process launches and package installs, applies the signed policy (block, quarantine, warn or audit), answers guardctl on its control sockets and ships events to the collector. It runs as root under the service manager (systemd, launchd, the Windows service); guardd --local runs it in the foreground for a try-out (what npm start runs). SIGINT/SIGTERM stop it cleanly (each stop step is bounded to 10 s; a step that hangs is logged by name and the stop goes on, so agent.stopped is recorded and the DB closed); SIGHUP re-fetches the policy.',
  section: 8,
  options: [
    { flags: '--config <file>', description: `config file (default: ${defaultPaths().configFile})` },
    {
      flags: '--local',
      description:
        'run in the foreground with state in ./.toolguard, an embedded guard-collector on 127.0.0.1 and the example ban list signed by a local development key (what `npm start` runs); it acts only on your own processes started after it (as root: on none, see --enforce) and on packages under its own directory, and reports anything else as "would block"',
    },
    { flags: '--local-dir <dir>', description: 'state directory of --local (default ./.toolguard)' },
    {
      flags: '--local-policy <file>',
      description: 'unsigned policy body --local signs and enforces (default policy/example-policy.json)',
    },
    {
      flags: '--enforce',
      description:
        'with --local as root: stop matching processes that any user starts from now on (without it, root only reports)',
    },
  ],
  examples: [
    'sudo guardd --config /etc/toolguard/config.json',
    'guardd --local',
    'sudo guardd --local --enforce --local-policy my-policy.json',
  ],
  // SCHEMA_NEWER: --local opens its embedded collector's database before anything else.
  exitCodes: ['OK', 'UNEXPECTED', 'USAGE', 'FORBIDDEN', 'CONFIG', 'SCHEMA_NEWER'],
};
