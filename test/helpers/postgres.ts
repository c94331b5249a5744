/**
 * A throwaway PostgreSQL server for one test file: `initdb` into a temp dir, `postgres` on a free
 * 127.0.0.1 port (and a Unix socket in the same dir), stopped and removed when the file ends. As
 * root it runs as the `postgres` system user of Debian's package (or, without one, a user created
 * with the `tgpg` prefix), because PostgreSQL refuses to run as root. Durability is off (fsync,
 * full_page_writes): nothing here must survive a power cut, and initdb + start take ~1-2 s.
 *
 * The binaries come from Debian's `postgresql` (`.ci/system-deps.sh`): PG_BIN or the newest
 * /usr/lib/postgresql/<version>/bin.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll } from 'vitest';
import { createTestUser } from './unix-user.js';
import { waitFor } from './wait.js';

export interface TestPostgres {
  /** `postgres://toolguard@127.0.0.1:<port>/postgres` (trust auth on loopback, no password). */
  readonly url: string;
  readonly port: number;
  /** Creates a fresh empty database and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Runs one SQL statement on the `postgres` database as the superuser. */
  sql<T extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params?: unknown[]): Promise<T[]>;
  /** Puts `line` first in pg_hba.conf and reloads (e.g. password auth for one role). */
  hbaFirst(line: string): Promise<void>;
  /** Turns TLS on with this certificate and key (PEM), for connections that ask for it. */
  enableTls(cert: string | Buffer, key: string | Buffer): Promise<void>;
  /** Stops the server and removes its files (also done when the test file ends). Safe twice. */
  stop(): Promise<void>;
}

/** The directory of initdb/postgres: PG_BIN, else the newest Debian cluster version installed. */
export function postgresBin(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => /^\d+$/.test(v) && existsSync(join(base, v, 'bin', 'postgres')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0)
    throw new Error(
      'PostgreSQL binaries not found: install Debian\'s "postgresql" (.ci/system-deps.sh) or set PG_BIN',
    );
  return join(base, versions[0] as string, 'bin');
}

/** A port that was free a moment ago on 127.0.0.1. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** The uid/gid to run PostgreSQL as: ourselves when not root, else `postgres` or a new `tgpg…` user. */
function serverUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const id = (flag: string, name: string): number =>
    Number(spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout.trim() || Number.NaN);
  const uid = id('-u', 'postgres');
  if (Number.isInteger(uid)) return { uid, gid: id('-g', 'postgres') };
  const u = createTestUser('tgpg');
  return { uid: u.uid, gid: u.gid };
}

/** Starts a server for this test file. */
/**
 * Every server started through this module, stopped when the test file ends: registered at import,
 * because an afterAll registered inside a hook or a test (where servers are started) never runs —
 * servers were left behind by every run.
 */
const running = new Set<() => Promise<void>>();
afterAll(async () => {
  await Promise.all([...running].map((stop) => stop()));
});

export async function startTestPostgres(): Promise<TestPostgres> {
  const bin = postgresBin();
  const dir = mkdtempSync(join(tmpdir(), 'tg-pg-'));
  const data = join(dir, 'data');
  const user = serverUser();
  if (user) chownSync(dir, user.uid, user.gid);
  const as = user ? { uid: user.uid, gid: user.gid } : {};
  const init = spawnSync(
    join(bin, 'initdb'),
    ['-D', data, '-U', 'toolguard', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
    { ...as, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } },
  );
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status}): ${init.stderr}`);
  }
  let child: ChildProcess | null = null;
  let port = 0;
  let log = '';
  for (let attempt = 0; attempt < 5 && child === null; attempt++) {
    port = await freePort();
    log = '';
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
        'fsync=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'shared_buffers=64MB',
        '-c',
        'max_connections=200',
        '-c',
        'logging_collector=off',
      ],
      { ...as, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    proc.stderr?.on('data', (d: Buffer) => {
      log += d.toString('utf8');
    });
    const outcome = await waitFor(
      () =>
        /ready to accept connections/.test(log)
          ? 'ready'
          : proc.exitCode !== null || proc.signalCode !== null
            ? 'exited'
            : undefined,
      'PostgreSQL to accept connections',
      { timeoutMs: 30_000 },
    );
    if (outcome === 'ready') child = proc;
    // the port was taken meanwhile (another test): try another
  }
  if (child === null) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`postgres did not start: ${log.slice(-2000)}`);
  }
  const server = child;
  const url = `postgres://toolguard@127.0.0.1:${port}/postgres`;
  let dbs = 0;
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (server.exitCode === null && server.signalCode === null) {
        const exited = new Promise<void>((r) => server.once('exit', () => r()));
        server.kill('SIGINT'); // fast shutdown: aborts open transactions
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    })();
    return stopped;
  };
  running.add(stop);
  const sql = async <T extends pg.QueryResultRow>(text: string, params?: unknown[]): Promise<T[]> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<T>(text, params)).rows;
    } finally {
      await c.end();
    }
  };
  return {
    url,
    port,
    sql,
    async createDatabase(name?: string): Promise<string> {
      const db = name ?? `t${++dbs}_${process.pid}`;
      await sql(`CREATE DATABASE ${db} TEMPLATE template0`);
      return `postgres://toolguard@127.0.0.1:${port}/${db}`;
    },
    async enableTls(cert: string | Buffer, key: string | Buffer): Promise<void> {
      for (const [name, pem] of [
        ['server.crt', cert],
        ['server.key', key],
      ] as const) {
        const file = join(data, name);
        writeFileSync(file, pem, { mode: 0o600 });
        if (user) chownSync(file, user.uid, user.gid);
      }
      await sql('ALTER SYSTEM SET ssl = on');
      await sql('SELECT pg_reload_conf()');
      await waitFor(async () => (await sql<{ ssl: string }>('SHOW ssl'))[0]?.ssl === 'on', 'TLS to be on');
    },
    async hbaFirst(line: string): Promise<void> {
      const hba = join(data, 'pg_hba.conf');
      writeFileSync(hba, `${line}\n${readFileSync(hba, 'utf8')}`);
      await sql('SELECT pg_reload_conf()');
    },
    stop,
  };
}
