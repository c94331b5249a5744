/**
 * Owns printing guardctl's output: text for people (colour only on a TTY) or JSON for machines.
 * The only place in guardctl that writes to stdout/stderr.
 */
import type { CommandOutput } from './command.js';

export interface Renderer {
  output(out: CommandOutput): void;
  error(e: { code: string; message: string; hint: string | null }): void;
  /** A line printed as it happens (follow modes). */
  line(text: string, data: unknown): void;
}

export function createRenderer(json: boolean, stdout = process.stdout, stderr = process.stderr): Renderer {
  const colour = !json && stdout.isTTY === true && !process.env.NO_COLOR;
  const paint = (s: string): string =>
    colour
      ? s
          .replace(/\b(OK|RUNNING)\b/g, '\x1b[32m$1\x1b[0m')
          .replace(/\b(FAIL|STALE|NOT RUNNING|BLOCKED)\b/g, '\x1b[31m$1\x1b[0m')
      : s;
  return {
    output(out) {
      if (json) stdout.write(`${JSON.stringify(out.data, null, 2)}\n`);
      else if (out.text) stdout.write(`${paint(out.text)}${out.text.endsWith('\n') ? '' : '\n'}`);
    },
    error(e) {
      if (json) stdout.write(`${JSON.stringify({ error: { code: e.code, message: e.message } }, null, 2)}\n`);
      stderr.write(`guardctl: ${e.message} [${e.code}]\n`);
      if (e.hint && !json) stderr.write(`${e.hint}\n`);
    },
    line(text, data) {
      stdout.write(json ? `${JSON.stringify(data)}\n` : `${paint(text)}\n`);
    },
  };
}
