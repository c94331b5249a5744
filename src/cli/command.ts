/**
 * Owns the guardctl command contract. A command is one module in src/cli/commands/<name>.ts
 * exporting a `GuardctlCommand`, plus one line in src/cli/command-list.ts. Commands return data;
 * the renderer (render.ts) prints it for people or as JSON, and error-message.ts maps error codes
 * to exit codes. Commands talk to the daemon only through `ctx.call` (the control client).
 */

import type { Style } from './render.js';

export interface CommandOption {
  /** commander flag syntax, e.g. '--since <time>' or '--force'. */
  readonly flags: string;
  readonly description: string;
}

export interface CommandArg {
  /** commander argument syntax, e.g. '<id>' or '[file]'. */
  readonly syntax: string;
  readonly description: string;
}

export interface CommandContext {
  /** Positional arguments, in the order of `args`. */
  readonly args: readonly string[];
  /** Parsed options of this command (camelCased by commander). */
  readonly options: Readonly<Record<string, unknown>>;
  readonly json: boolean;
  /** Calls the daemon: on the admin socket when the command `needsRoot`, else the public one. */
  call<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T>;
  /** The public and admin socket paths in use (for messages). */
  readonly sockets: { readonly public: string; readonly admin: string };
  /** The config file guardctl was pointed at (for commands that read it locally). */
  readonly configFile: string;
  /**
   * Colours for text output (no-ops unless stdout is a terminal and NO_COLOR is unset); absent in
   * contexts built by tests and other callers: plain text then.
   */
  readonly style?: Style;
  /**
   * stdout is a terminal: lists may be laid out for the eye (wrapped to 100 columns); on a pipe
   * they stay one line per record for grep and awk. Absent = not a terminal.
   */
  readonly tty?: boolean;
}

/** What a command returns: `data` for --json, `text` for people, and the exit code (default 0). */
export interface CommandOutput {
  readonly data: unknown;
  readonly text: string;
  readonly exitCode?: number;
}

export interface GuardctlCommand {
  /** Space-separated for subcommands: 'status', 'policy sign', 'quarantine restore'. */
  readonly name: string;
  readonly summary: string;
  readonly args?: readonly CommandArg[];
  readonly options?: readonly CommandOption[];
  /** Command lines shown under "Examples:" in `--help` (and the man page), each a complete call. */
  readonly examples?: readonly string[];
  /** Needs root: uses the admin socket. */
  readonly needsRoot: boolean;
  /** Talks to the running daemon (false for offline tools such as `policy sign`). */
  readonly needsDaemon: boolean;
  run(ctx: CommandContext): Promise<CommandOutput>;
}
