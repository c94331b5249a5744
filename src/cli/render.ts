/**
 * Owns printing guardctl's output: text for people or JSON for machines, and the one `Style` that
 * colours text: only when stdout is a terminal, never with --json, never when NO_COLOR is set
 * (https://no-color.org: present and not empty). The only place in guardctl that writes to
 * stdout/stderr; guardd and guard-collector print their errors through it too.
 */
import type { CommandOutput } from './command.js';
import { printable, wrap } from './format.js';

export interface Renderer {
  output(out: CommandOutput): void;
  error(e: { code: string; message: string; hint: string | null }): void;
  /** A line printed as it happens (follow modes). */
  line(text: string, data: unknown): void;
}

/** Semantic colours for text output; every method returns its input unchanged when colour is off. */
export interface Style {
  readonly enabled: boolean;
  /** Good state: running, ok, enrolled. */
  ok(s: string): string;
  /** Needs attention: warn, stale soon, monitor mode. */
  warn(s: string): string;
  /** Bad state or a blocking verdict: not running, stale, blocked, failed. */
  bad(s: string): string;
  /** Section headings. */
  heading(s: string): string;
  /** Secondary facts (ids, hashes). */
  dim(s: string): string;
}

/** True when guardctl may colour `stream`: a TTY, not --json, NO_COLOR unset or empty. */
export function colourWanted(json: boolean, stream: { isTTY?: boolean } = process.stdout): boolean {
  return !json && stream.isTTY === true && !process.env.NO_COLOR;
}

export function createStyle(enabled: boolean): Style {
  const sgr =
    (open: string) =>
    (s: string): string =>
      enabled && s ? `\x1b[${open}m${s}\x1b[0m` : s;
  return {
    enabled,
    ok: sgr('32'),
    warn: sgr('33'),
    bad: sgr('1;31'),
    heading: sgr('1'),
    dim: sgr('2'),
  };
}

/** `program` names the program in error lines (`guardd: …`): the three programs print errors alike. */
export function createRenderer(
  json: boolean,
  stdout = process.stdout,
  stderr = process.stderr,
  program = 'guardctl',
): Renderer {
  const errStyle = createStyle(colourWanted(json, stderr));
  return {
    output(out) {
      if (json) stdout.write(`${JSON.stringify(out.data, null, 2)}\n`);
      else if (out.text) stdout.write(`${out.text}${out.text.endsWith('\n') ? '' : '\n'}`);
    },
    error(e) {
      if (json) stdout.write(`${JSON.stringify({ error: { code: e.code, message: e.message } }, null, 2)}\n`);
      const message = printable(e.message.replace(/\s*\n\s*/g, ' '));
      const text = `${errStyle.bad(`${program}:`)} ${message} ${errStyle.dim(`[${e.code}]`)}`;
      // On a terminal: wrapped to 100 columns (continuations indented); on a pipe: one line.
      const tty = (stderr as { isTTY?: boolean }).isTTY === true;
      stderr.write(`${tty ? wrap(text, 2).join('\n').trimStart() : text}\n`);
      if (e.hint && !json) {
        const hint = e.hint.split('\n').map(printable).join('\n');
        stderr.write(`${tty ? wrap(hint, 2).join('\n').trimStart() : hint}\n`);
      }
    },
    line(text, _data) {
      stdout.write(json ? `${JSON.stringify(_data)}\n` : `${text}\n`);
    },
  };
}
