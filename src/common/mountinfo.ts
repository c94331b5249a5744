/**
 * Owns parsing /proc/<pid>/mountinfo (proc(5)): one entry per line, octal escapes in paths and the
 * source decoded, malformed lines skipped; and naming a file's device as the table does. Read by
 * the pre-exec listener (which file systems to mark), by src/sensors/mount-trust.ts (whether a
 * mount's bytes may be cached), by src/common/users.ts (who made a FUSE mount) and by
 * src/enforcement/owner-fs.ts (which mount a step of the path it walks is on).
 */

export interface MountEntry {
  /** The mount's id (field 1; reused after an unmount). */
  readonly id: number;
  /** `major:minor` of the file system's device (st_dev of its files). */
  readonly device: string;
  readonly mountPoint: string;
  readonly fstype: string;
  /** The mount source (a device path, `tmpfs`, `server:/export`…). */
  readonly source: string;
  /** The super block options, split at commas (`user_id=1000` for FUSE). */
  readonly superOptions: readonly string[];
}

/** Parses mountinfo text; malformed lines are skipped. */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (dash < 6 || f.length < dash + 3) continue;
    out.push({
      id: Number(f[0]),
      device: f[2] as string,
      mountPoint: decode(f[4] as string),
      fstype: f[dash + 1] as string,
      source: decode(f[dash + 2] as string),
      superOptions: (f[dash + 3] ?? '').split(','),
    });
  }
  return out;
}

/** mountinfo's octal escapes (space, tab, newline, backslash). */
function decode(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** glibc's gnu_dev_major of a dev_t as Node gives it (a double: st_dev, st_rdev). */
export function major(dev: number): number {
  const d = BigInt(dev);
  return Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
}

/** glibc's gnu_dev_minor of a dev_t as Node gives it. */
export function minor(dev: number): number {
  const d = BigInt(dev);
  return Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
}

/** A device id (st_dev) as mountinfo prints a mount's device: `major:minor`. */
export function deviceName(dev: number): string {
  return `${major(dev)}:${minor(dev)}`;
}
