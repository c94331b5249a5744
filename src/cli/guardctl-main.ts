/**
 * Owns guardctl's entry point: global flags, locating the daemon's sockets, wiring each command
 * module into commander, rendering the result and the exit code. Talks to the daemon only through
 * the control client.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { GuardError, isGuardError } from '../common/errors.js';
import { defaultPaths, socketPaths } from '../common/platform-paths.js';
import { loadConfig } from '../config/load-config.js';
import { callDaemon } from '../control/control-client.js';
import type { CommandContext, GuardctlCommand } from './command.js';
import { COMMANDS } from './command-list.js';
import { describeError, type ErrorContext, EXIT, type ExitName } from './error-message.js';
import { isLocalModeConfig, LOCAL_MODE_DIR } from './local-mode-config.js';
import { createProgram, examplesText, type ProgramSpec, reportError } from './program.js';
import { colourWanted, createRenderer, createStyle } from './render.js';

interface GlobalOptions {
  json?: boolean;
  config?: string;
  socketDir?: string;
}

/** guardctl's own options (before the command), its examples and exit codes. */
export const GUARDCTL_PROGRAM: ProgramSpec = {
  name: 'guardctl',
  summary: 'See and steer toolguard on this machine',
  description:
    'guardctl talks to the local guardd over its control sockets: the public socket answers read-only questions for anyone; commands marked (root) use the admin socket, which only root can open. Every command accepts --json; without it the output is for people (colour only on a terminal, never with NO_COLOR).',
  section: 1,
  options: [
    { flags: '--json', description: 'print JSON for machines' },
    { flags: '--config <file>', description: 'config file to read the socket location from' },
    { flags: '--socket-dir <dir>', description: 'directory of guardd.sock / admin.sock' },
  ],
  examples: [
    'guardctl status',
    'guardctl events --since 1h --type process.blocked',
    'guardctl policy test ~/.local/bin/claude',
    'sudo guardctl policy reload',
    'guardctl --json status | jq .policy',
  ],
  exitCodes: Object.keys(EXIT) as ExitName[],
};

export async function main(argv: readonly string[]): Promise<number> {
  let exitCode: number = EXIT.OK;
  const { command: program, parse } = createProgram(GUARDCTL_PROGRAM);

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
    sub.addHelpText('after', examplesText(examplesOf(cmd)));
    sub.action(async (...actionArgs: unknown[]) => {
      const command = actionArgs.at(-1) as Command;
      const globals = program.opts<GlobalOptions>();
      exitCode = await runCommand(cmd, command.args, command.opts(), globals);
    });
  }
  for (const [word, group] of groups)
    group.addHelpText(
      'after',
      examplesText(
        COMMANDS.filter((c) => c.name.startsWith(`${word} `)).map((c) => examplesOf(c)[0] as string),
      ),
    );

  try {
    return (await parse(argv)) ?? exitCode;
  } catch (err) {
    return reportError(err, { program: 'guardctl', command: commandNamed(argv) }, argv.includes('--json'));
  }
}

/** A command's examples; a command that declares none gets its plain and its --json call. */
export function examplesOf(cmd: GuardctlCommand): readonly string[] {
  if (cmd.examples && cmd.examples.length > 0) return cmd.examples;
  const args = (cmd.args ?? []).map((a) => a.syntax).join(' ');
  const call = `${cmd.name}${args ? ` ${args}` : ''}`;
  return [`guardctl ${call}`, `guardctl --json ${call}`];
}

/** The command (or group) the words of `argv` name, for hints: 'policy reload', 'policy', or undefined. */
function commandNamed(argv: readonly string[]): string | undefined {
  const words = argv.filter((a) => !a.startsWith('-'));
  let best: string | undefined;
  for (const cmd of COMMANDS) {
    const parts = cmd.name.split(' ');
    for (let n = parts.length; n > 0; n--) {
      const prefix = parts.slice(0, n);
      if (prefix.every((p, i) => words[i] === p) && (best?.split(' ').length ?? 0) < n)
        best = prefix.join(' ');
    }
  }
  return best;
}

async function runCommand(
  cmd: GuardctlCommand,
  args: readonly string[],
  options: Record<string, unknown>,
  globals: GlobalOptions,
): Promise<number> {
  const json = globals.json === true;
  const renderer = createRenderer(json);
  const context: { command: string; configFile?: string; localMode?: boolean } = { command: cmd.name };
  try {
    const { configFile, sockets } = locate(globals, context);
    const ctx: CommandContext = {
      args,
      options,
      json,
      sockets,
      configFile,
      style: createStyle(colourWanted(json)),
      tty: !json && process.stdout.isTTY === true,
      call: async (method, params) => {
        const socket = cmd.needsRoot ? sockets.admin : sockets.public;
        try {
          return await callDaemon(socket, method, params ?? {});
        } catch (err) {
          throw needsRootError(cmd, socket, sockets.admin, err);
        }
      },
    };
    const out = await cmd.run(ctx);
    renderer.output(out);
    return out.exitCode ?? EXIT.OK;
  } catch (err) {
    const d = describeError(err, context satisfies ErrorContext);
    renderer.error(d);
    return d.exitCode;
  }
}

/**
 * The admin socket is mode 0600, owned by guardd's user: the kernel refuses anyone else's connect
 * (EACCES) before guardd sees a request. For a root command that is "needs root", not "not running".
 */
function needsRootError(cmd: GuardctlCommand, socket: string, adminSocket: string, err: unknown): unknown {
  if (socket !== adminSocket || !isGuardError(err, 'GUARD_CONTROL_PERMISSION_DENIED')) return err;
  return new GuardError(
    'GUARD_CLI_NEEDS_ROOT',
    `\`guardctl ${cmd.name}\` needs root: only root may open the admin socket ${adminSocket}`,
    { socket: adminSocket },
    { cause: err },
  );
}

/**
 * Where the daemon's sockets are: --socket-dir, else paths.socket_dir as guardd reads it
 * (TOOLGUARD_PATHS_SOCKET_DIR, macOS managed preferences, the config file — --config, else the
 * platform config; in a checkout running `npm start`, ./.toolguard/config.json), else the default.
 */
function locate(
  globals: GlobalOptions,
  context: { configFile?: string; localMode?: boolean },
): { configFile: string; sockets: { public: string; admin: string } } {
  const platformConfig = defaultPaths().configFile;
  const localConfig = resolve(LOCAL_MODE_DIR, 'config.json');
  const configFile =
    globals.config ?? (!existsSync(platformConfig) && existsSync(localConfig) ? localConfig : platformConfig);
  context.configFile = configFile;
  context.localMode = isLocalModeConfig(configFile);
  // The same loader guardd uses (file, macOS managed preferences, environment), so both agree.
  const socketDir =
    globals.socketDir ??
    loadConfig({ file: configFile, required: globals.config !== undefined })['paths.socket_dir'];
  return { configFile, sockets: socketPaths(socketDir) };
}
