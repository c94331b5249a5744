/**
 * Owns the small text helpers of guardctl's human output: relative times, human sizes, wrapping
 * to the terminal width guardctl writes for (100 columns). Pure: the clock comes in as an argument.
 */

/** guardctl's text output stays within this many columns (a split terminal, a 100-column tmux pane). */
export const TEXT_COLUMNS = 100;

/**
 * `text` as lines of at most `width` columns, each indented by `indent` spaces. A word longer than
 * a line (a path, a hash) is never cut: it gets a line of its own, indented less so it still fits
 * (not at all when it is wider than `width` itself).
 */
export function wrap(text: string, indent: number, width: number = TEXT_COLUMNS): string[] {
  const room = Math.max(20, width - indent);
  const lines: string[] = [];
  let line = '';
  let used = 0; // visible columns of `line`
  const flush = (): void => {
    if (!line) return;
    const lead = used > room ? Math.max(0, width - used) : indent;
    lines.push(' '.repeat(lead) + line);
    line = '';
    used = 0;
  };
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const w = visibleLength(word);
    if (line && used + 1 + w > room) flush();
    if (!line && w > room) {
      line = word;
      used = w;
      flush();
      continue;
    }
    line = line ? `${line} ${word}` : word;
    used = used ? used + 1 + w : w;
  }
  flush();
  return lines;
}

/** Columns `s` takes on a terminal: colour escapes take none, each code point one. */
export function visibleLength(s: string): number {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching the SGR escapes Style writes
  return [...s.replace(/\x1b\[[0-9;]*m/g, '')].length;
}

/** "3 min ago", "in 2 h", "just now": `iso` relative to `now` (ms since epoch); "never" for null. */
export function relativeTime(iso: string | null | undefined, now: number): string {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const diff = now - t;
  const abs = Math.abs(diff);
  if (abs < 10_000) return 'just now';
  const span = humanDuration(abs);
  return diff >= 0 ? `${span} ago` : `in ${span}`;
}

/** 45 s, 3 min, 2 h, 5 d: one unit, rounded down, for a span of `ms`. */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h`;
  return `${Math.floor(h / 24)} d`;
}

/** 0 B, 812 B, 4.2 KiB, 13 MiB: binary units, one decimal below 10. */
export function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/**
 * `s` safe to print on a terminal: C0 controls (newline too), DEL and C1 controls become visible
 * `\xHH` text. What guardctl shows comes partly from users (file and process names, paths, argv,
 * package names): an escape in them must be shown to the person reading, never run by their
 * terminal (clear screen, titles, OSC 52 clipboard writes, a line faking another). Colour is
 * added by Style after this, never passed through it.
 */
export function printable(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters being neutralised
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
