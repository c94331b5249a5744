// A throwaway PostgreSQL server for benchmarks (the bench twin of test/helpers/postgres.ts):
// initdb into a temp dir, postgres on a free 127.0.0.1 port, as the `postgres` user when running
// as root. Unlike the tests' server it keeps PostgreSQL's default durability (fsync on,
// synchronous_commit on), so its numbers compare with SQLite at synchronous=FULL.
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The directory of initdb/postgres/psql: PG_BIN, else the newest /usr/lib/postgresql/<v>/bin. */
export function postgresBin() {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => /^\d+$/.test(v) && existsSync(join(base, v, 'bin', 'postgres')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0)
    throw new Error('PostgreSQL not found: install Debian\'s "postgresql" or set PG_BIN');
  return join(base, versions[0], 'bin');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** utime + stime (+ the reaped children's with `children`) of `pid` in seconds, or null. */
export function procCpuSeconds(pid, children = false) {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // fields after the command name, which ends at the last ')': state is [0], utime [11] … cstime [14]
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  return (f[11] + f[12] + (children ? f[13] + f[14] : 0)) / CLOCK_TICKS;
}

/** USER_HZ of /proc's times (100 on Linux everywhere in practice). */
const CLOCK_TICKS = 100;

/** Whether a child of `postmaster` serves `db` (its process title) or is a zombie. */
function busyWith(postmaster, db) {
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) !== postmaster) continue;
      if (f[0] === 'Z') return true;
      const title = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (title.split(' ')[2] === db) return true;
    } catch {}
  }
  return false;
}

function serverCpuSeconds(postmaster) {
  const own = procCpuSeconds(postmaster, true);
  if (own === null) return null;
  let live = 0;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${p}/stat`, 'utf8');
    } catch {
      continue;
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[1]) === postmaster) live += procCpuSeconds(p) ?? 0;
  }
  return own + live;
}

/**
 * Starts a server; resolves with { url(db), createDatabase(name), dropDatabase(name), checkpoint(),
 * psql(args), stop(), reused }.
 * Options: `dir`, a directory to keep the server in (initdb only when it holds no cluster yet;
 * `stop` leaves it, so a later run reuses its databases: `reused` is true then), and `settings`,
 * extra `-c name=value` server settings.
 */
export async function startPostgres(options = {}) {
  const bin = postgresBin();
  const keep = options.dir !== undefined;
  if (keep) mkdirSync(options.dir, { recursive: true });
  const dir = keep ? options.dir : mkdtempSync(join(tmpdir(), 'tgpgb-'));
  const data = join(dir, 'data');
  const reused = keep && existsSync(join(data, 'PG_VERSION'));
  let as = {};
  if (process.getuid?.() === 0) {
    const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    if (!Number.isInteger(uid) || uid === 0) throw new Error('running as root needs the "postgres" user');
    as = { uid, gid };
    chownSync(dir, uid, gid);
  }
  if (!reused) {
    const init = spawnSync(
      join(bin, 'initdb'),
      ['-D', data, '-U', 'toolguard', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
      { ...as, encoding: 'utf8' },
    );
    if (init.status !== 0) throw new Error(`initdb: ${init.stderr}`);
  }
  const port = await freePort();
  const proc = spawn(
    join(bin, 'postgres'),
    [
      '-D',
      data,
      '-p',
      String(port),
      '-k',
      dir,
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=200',
      ...Object.entries(options.settings ?? {}).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    ],
    { ...as, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`postgres did not start: ${log}`)), 30_000);
    proc.stderr.on('data', (d) => {
      log += d;
      if (/ready to accept connections/.test(log)) {
        clearTimeout(t);
        resolve();
      }
    });
    proc.once('exit', (code) => reject(new Error(`postgres exited ${code}: ${log}`)));
  });
  proc.stderr.resume();
  const url = (db) => `postgres://toolguard@127.0.0.1:${port}/${db}`;
  const psql = (args, db = 'postgres') =>
    spawnSync(join(bin, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url(db), ...args], {
      encoding: 'utf8',
    });
  return {
    url,
    psql,
    reused,
    /**
     * CPU seconds the server has used so far (postmaster, its live processes and the ended ones it
     * reaped, e.g. a psql session's backend), from /proc; null where there is no /proc.
     */
    cpuSeconds() {
      return serverCpuSeconds(proc.pid);
    },
    /**
     * Resolves once no server process serves database `db` and none has exited unreaped (at most
     * `timeoutMs`), so cpuSeconds() has counted every session of it that ended.
     */
    async sessionsEnded(db, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && busyWith(proc.pid, db)) await new Promise((r) => setTimeout(r, 20));
    },
    createDatabase(name) {
      const r = psql(['-c', `CREATE DATABASE ${name} TEMPLATE template0`]);
      if (r.status !== 0) throw new Error(`createdb: ${r.stderr}`);
      return url(name);
    },
    /** Drops database `name`, ending any session still on it (a bench round's, autovacuum's). */
    dropDatabase(name) {
      const r = psql(['-c', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`]);
      if (r.status !== 0) throw new Error(`dropdb: ${r.stderr}`);
    },
    /** Writes every dirty buffer out now (CHECKPOINT), so the next measurement does not pay for them. */
    checkpoint() {
      const r = psql(['-c', 'CHECKPOINT']);
      if (r.status !== 0) throw new Error(`checkpoint: ${r.stderr}`);
    },
    stop() {
      return new Promise((resolve) => {
        proc.once('exit', () => {
          if (!keep) rmSync(dir, { recursive: true, force: true });
          resolve();
        });
        proc.kill('SIGINT');
      });
    },
  };
}
