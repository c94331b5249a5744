/**
 * Owns guardctl's entry point: global flags, locating the daemon's sockets, wiring each command
 * module into commander, rendering the result and the exit code. Talks to the daemon only through
 * the control client.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { defaultPaths, socketPaths } from '../common/platform-paths.js';
import { AGENT_VERSION } from '../common/version.js';
import { loadConfig } from '../config/load-config.js';
import { callDaemon } from '../control/control-client.js';
import type { CommandContext, GuardctlCommand } from './command.js';
import { COMMANDS } from './command-list.js';
import { describeError, EXIT } from './error-message.js';
import { createRenderer } from './render.js';

/** The state dir `npm start` uses in a checkout; guardctl finds a local-mode daemon through it. */
export const LOCAL_MODE_DIR = '.toolguard';

interface GlobalOptions {
  json?: boolean;
  config?: string;
  socketDir?: string;
}

export async function main(argv: readonly string[]): Promise<number> {
  let exitCode: number = EXIT.OK;
  const program = new Command('guardctl')
    .description('See and steer toolguard on this machine')
    .version(AGENT_VERSION, '-V, --version')
    .option('--json', 'print JSON for machines')
    .option('--config <file>', 'config file to read the socket location from')
    .option('--socket-dir <dir>', 'directory of guardd.sock / admin.sock')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const groups = new Map<string, Command>();
  for (const cmd of COMMANDS) {
    const words = cmd.name.split(' ');
    let parent = program;
    for (const word of words.slice(0, -1)) {
      let group = groups.get(word);
      if (!group) {
        group = parent.command(word).description(`${word} commands`);
        groups.set(word, group);
      }
      parent = group;
    }
    const sub = parent.command(words.at(-1) as string).description(cmd.summary);
    for (const a of cmd.args ?? []) sub.argument(a.syntax, a.description);
    for (const o of cmd.options ?? []) sub.option(o.flags, o.description);
    sub.action(async (...actionArgs: unknown[]) => {
      const command = actionArgs.at(-1) as Command;
      const globals = program.opts<GlobalOptions>();
      exitCode = await runCommand(cmd, command.args, command.opts(), globals);
    });
  }

  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    throw err;
  }
  return exitCode;
}

async function runCommand(
  cmd: GuardctlCommand,
  args: readonly string[],
  options: Record<string, unknown>,
  globals: GlobalOptions,
): Promise<number> {
  const json = globals.json === true;
  const renderer = createRenderer(json);
  try {
    const { configFile, sockets } = locate(globals);
    const ctx: CommandContext = {
      args,
      options,
      json,
      sockets,
      configFile,
      call: (method, params) =>
        callDaemon(cmd.needsRoot ? sockets.admin : sockets.public, method, params ?? {}),
    };
    const out = await cmd.run(ctx);
    renderer.output(out);
    return out.exitCode ?? EXIT.OK;
  } catch (err) {
    const d = describeError(err);
    renderer.error(d);
    return d.exitCode;
  }
}

/**
 * Where the daemon's sockets are: --socket-dir, else paths.socket_dir as guardd reads it
 * (TOOLGUARD_PATHS_SOCKET_DIR, macOS managed preferences, the config file — --config, else the
 * platform config; in a checkout running `npm start`, ./.toolguard/config.json), else the default.
 */
function locate(globals: GlobalOptions): { configFile: string; sockets: { public: string; admin: string } } {
  const platformConfig = defaultPaths().configFile;
  const localConfig = resolve(LOCAL_MODE_DIR, 'config.json');
  const configFile =
    globals.config ?? (!existsSync(platformConfig) && existsSync(localConfig) ? localConfig : platformConfig);
  // The same loader guardd uses (file, macOS managed preferences, environment), so both agree.
  const socketDir =
    globals.socketDir ??
    loadConfig({ file: configFile, required: globals.config !== undefined })['paths.socket_dir'];
  return { configFile, sockets: socketPaths(socketDir) };
}
