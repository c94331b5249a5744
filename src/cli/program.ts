/**
 * Owns what guardctl, guardd and guard-collector share on the command line: one argument parser
 * (commander) set up the same way for all three from a `ProgramSpec` — `-V, --version` printing
 * `<program> <version>`, `--help` ending with examples and the program's exit codes, and
 * commander's own errors (unknown option, missing value) printed by the one renderer as
 * `GUARD_CLI_USAGE`, exit 2. The same specs generate the man pages and completions
 * (cli-reference.ts), so the docs cannot drift from what the programs parse.
 */
import { Command, CommanderError, Option } from 'commander';
import { GuardError } from '../common/errors.js';
import { AGENT_VERSION } from '../common/version.js';
import type { CommandOption } from './command.js';
import { describeError, type ErrorContext, EXIT, EXIT_MEANINGS, type ExitName } from './error-message.js';
import { createRenderer } from './render.js';

/** An option of a program (before any subcommand). */
export interface ProgramOption extends CommandOption {
  /**
   * Parsed but not listed in --help, the man page or the completions: a flag that exists only to
   * be refused with a better message than "unknown option" (a secret given on the command line).
   */
  readonly hidden?: boolean;
}

/** A program's command line as data: what commander parses and what the man page says. */
export interface ProgramSpec {
  readonly name: 'guardctl' | 'guardd' | 'guard-collector';
  /** One line: the man page's NAME and the first line of --help. */
  readonly summary: string;
  /** The man page's DESCRIPTION (a paragraph). */
  readonly description: string;
  /** Manual section: 1 for the user's tool, 8 for the two services. */
  readonly section: 1 | 8;
  /** The options, without -V/--version and -h/--help (every program has those). */
  readonly options: readonly ProgramOption[];
  /** Complete command lines shown under "Examples:" in --help and in the man page. */
  readonly examples: readonly string[];
  /** The exit codes this program can end with (the meanings come from the one table, EXIT_MEANINGS). */
  readonly exitCodes: readonly ExitName[];
}

/** The options every program has, as commander adds them (for the man page and completions). */
export function standardOptions(name: string): readonly [CommandOption, CommandOption] {
  return [
    { flags: '-V, --version', description: `print the program name and version ("${versionLine(name)}")` },
    { flags: '-h, --help', description: 'print help with examples' },
  ];
}

/** What `--version` prints: the same form for the three programs. */
export function versionLine(name: string): string {
  return `${name} ${AGENT_VERSION}`;
}

/** The "Examples:" block under --help. */
export function examplesText(examples: readonly string[]): string {
  return `\nExamples:\n${examples.map((e) => `  $ ${e}`).join('\n')}\n`;
}

/** The "Exit codes:" block under a program's --help. */
function exitCodesText(codes: readonly ExitName[]): string {
  return `\nExit codes:\n${codes.map((c) => `  ${String(EXIT[c]).padStart(2)}  ${EXIT_MEANINGS[c]}`).join('\n')}\n`;
}

export interface Program {
  readonly command: Command;
  /**
   * Parses `argv`, running a subcommand's action when one matches. Resolves with an exit code when
   * commander already printed all there is to print (--help or --version: 0; a group named
   * without its subcommand, whose help was printed: 2), with null when the program goes on with
   * `command.opts()`. Throws `GUARD_CLI_USAGE` for an unknown option, a missing value or argument
   * (print it with `reportError`). Call once per Program.
   */
  parse(argv: readonly string[]): Promise<number | null>;
  /** `parse` for a program without asynchronous actions (guardd, guard-collector). */
  parseSync(argv: readonly string[]): number | null;
}

/** A commander program for `spec`, with the shared version, help and error behaviour. */
export function createProgram(spec: ProgramSpec): Program {
  let usageMessage: string | null = null;
  const [version, help] = standardOptions(spec.name);
  const command = new Command(spec.name)
    .description(spec.summary)
    .version(versionLine(spec.name), version.flags, version.description)
    .helpOption(help.flags, help.description)
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      outputError: (s) => {
        usageMessage = s.trim();
      },
    });
  for (const o of spec.options) {
    const option = new Option(o.flags, o.description);
    command.addOption(o.hidden ? option.hideHelp() : option);
  }
  command.addHelpText('after', examplesText(spec.examples) + exitCodesText(spec.exitCodes));
  const ended = (err: unknown): number => {
    if (!(err instanceof CommanderError)) throw err;
    if (err.exitCode === 0) return EXIT.OK;
    if (usageMessage === null) return EXIT.USAGE;
    throw new GuardError('GUARD_CLI_USAGE', (usageMessage as string).replace(/^error:\s*/, ''));
  };
  return {
    command,
    async parse(argv) {
      try {
        await command.parseAsync([...argv], { from: 'user' });
        return null;
      } catch (err) {
        return ended(err);
      }
    },
    parseSync(argv) {
      try {
        command.parse([...argv], { from: 'user' });
        return null;
      } catch (err) {
        return ended(err);
      }
    },
  };
}

/**
 * Prints `err` the one way — `<program>: message [CODE]` and the hint on stderr (with `json`, also
 * `{"error": {code, message}}` on stdout) — and returns its exit code.
 */
export function reportError(
  err: unknown,
  context: ErrorContext & { program: ProgramSpec['name'] },
  json = false,
): number {
  const d = describeError(err, context);
  createRenderer(json, process.stdout, process.stderr, context.program).error(d);
  return d.exitCode;
}

/**
 * A failure while guardd or guard-collector starts, as the error people see: the operating system
 * refusing a directory, a file or a port (EACCES/EPERM: typically started without root, or a port
 * below 1024) becomes GUARD_CLI_PERMISSION_DENIED (exit 4, with how to run it); a config error is
 * unchanged (exit 6); anything else says "cannot start:" and keeps its code, or gets
 * GUARD_CLI_START_FAILED (exit 1).
 */
export function startFailure(err: unknown): GuardError {
  if (err instanceof GuardError) {
    if (err.code.startsWith('GUARD_CONFIG_')) return err;
    return new GuardError(err.code, `cannot start: ${err.message}`, err.details, { cause: err });
  }
  const e = err as NodeJS.ErrnoException & { port?: number };
  const message = `cannot start: ${e?.message ?? String(err)}`;
  if (e?.code === 'EACCES' || e?.code === 'EPERM')
    return new GuardError(
      'GUARD_CLI_PERMISSION_DENIED',
      message,
      { root: process.getuid?.() === 0, ...(e.syscall === 'listen' ? { port: e.port } : {}) },
      { cause: err },
    );
  return new GuardError('GUARD_CLI_START_FAILED', message, {}, { cause: err });
}
