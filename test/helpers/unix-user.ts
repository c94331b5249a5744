/**
 * Real unprivileged Unix users for tests that run as root (Linux): created with `useradd` under a
 * name unique to the test, removed with `userdel -r` when the test file ends. Processes started
 * through `spawnAs` are tracked and killed by pid first, so the user can be removed.
 */
import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { ROOT } from './daemon.js';
import { WaitAborted, waitFor } from './wait.js';

export interface TestUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

const created: TestUser[] = [];
const started = new Set<ChildProcess>();

afterAll(() => {
  for (const child of started) {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  for (const u of created) spawnSync('userdel', ['-r', '-f', u.name], { stdio: 'ignore' });
});

/** Creates a user named `<prefix><8 hex>` with a home; needs root. */
export function createTestUser(prefix: string): TestUser {
  const name = `${prefix}${randomBytes(4).toString('hex')}`;
  const r = spawnSync('useradd', ['-m', '-s', '/bin/sh', name], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`useradd ${name} failed: ${r.stderr}`);
  const id = (flag: string): number =>
    Number(spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout.trim());
  const home = spawnSync('getent', ['passwd', name], { encoding: 'utf8' }).stdout.split(':')[5] ?? '';
  const user = { name, uid: id('-u'), gid: id('-g'), home };
  created.push(user);
  return user;
}

/** `spawn` as `user` (or as this process's user when null), tracked and killed when the file ends. */
export function spawnAs(
  user: TestUser | null,
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): ChildProcess {
  const child = spawn(command, [...args], {
    stdio: 'ignore',
    ...options,
    ...(user
      ? {
          uid: user.uid,
          gid: user.gid,
          env: {
            PATH: process.env.PATH ?? '/usr/bin:/bin',
            HOME: user.home,
            USER: user.name,
            ...options.env,
          },
        }
      : {}),
  });
  started.add(child);
  return child;
}

/**
 * Runs `script` (`sh -c`) as `user` in a user and mount namespace of their own (`unshare -Urm`),
 * with `env` added, and resolves once it printed `ready` (fails at once with its stderr if it
 * exits first). The script holds open what the test looks at and ends in
 * `exec sleep …`; the child is tracked like any spawnAs child.
 */
export async function holdInUserNamespace(
  user: TestUser,
  script: string,
  what: string,
  env: Record<string, string> = {},
): Promise<ChildProcess> {
  const holder = spawnAs(user, 'unshare', ['-Urm', 'sh', '-c', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  let out = '';
  let err = '';
  holder.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  holder.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  await waitFor(() => {
    if (holder.exitCode !== null) throw new WaitAborted(`${what}: exited ${holder.exitCode}: ${err}`);
    return out.includes('ready');
  }, what);
  return holder;
}

/**
 * A directory `user` can run bin/guardd.js and bin/guardctl.js from: the checkout itself when the
 * user can read it (and everything above it), else a copy of what the programs load at run time
 * (bin, dist, policy, node_modules, package.json) made in `spare`, an empty temp dir.
 */
export function checkoutReadableBy(user: TestUser, spare: string): string {
  const probe = spawnSync(
    process.execPath,
    [
      '-e',
      `const fs = require('node:fs'); for (const p of process.argv.slice(1)) fs.accessSync(p, fs.constants.R_OK);`,
      join(ROOT, 'bin', 'guardd.js'),
      join(ROOT, 'dist', 'daemon', 'guardd-main.js'),
      join(ROOT, 'node_modules', 'better-sqlite3', 'package.json'),
      join(ROOT, 'policy', 'example-policy.json'),
    ],
    { uid: user.uid, gid: user.gid, stdio: 'ignore' },
  );
  if (probe.status === 0) return ROOT;
  chmodSync(spare, 0o755); // a temp dir is 0700; the directories above it (/tmp) are searchable
  for (const part of ['bin', 'dist', 'policy', 'node_modules', 'package.json']) {
    cpSync(join(ROOT, part), join(spare, part), { recursive: true });
  }
  return spare;
}
