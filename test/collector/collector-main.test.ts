/**
 * The guard-collector program as a real process (dist/): config from flags, a JSON file and the
 * environment; bad config refused with key, value and expectation (exit 6, no stack trace), an
 * unknown flag as a usage error (exit 2);
 * SIGTERM closes gracefully (exit 0) and a restart on the same DB keeps devices and events.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { enrollDevice, heartbeatEvent, ndjson, spawnCollectorProcess } from '../helpers/collector.js';
import { tempDir } from '../helpers/tmp.js';

const BIN = fileURLToPath(new URL('../../bin/guard-collector.js', import.meta.url));
const dir = tempDir('tg-colmain-');
const GOOD_ENV = {
  TOOLGUARD_COLLECTOR_ENROLL_SECRET: 'enroll-secret-0123456789',
  TOOLGUARD_COLLECTOR_ADMIN_TOKEN: 'admin-token-0123456789',
};

function run(
  args: string[],
  env: Record<string, string> = GOOD_ENV,
): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, '--db', join(dir, 'refused.db'), ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
    timeout: 15_000,
  });
  return { status: r.status, stderr: r.stderr };
}

describe('bad config is refused', () => {
  const badFile = join(dir, 'bad.json');
  writeFileSync(badFile, JSON.stringify({ listen: '127.0.0.1:0', rate_limt: 5 }));
  const notJson = join(dir, 'not.json');
  writeFileSync(notJson, '{listen:');

  it.each([
    [
      'a malformed --listen',
      ['--listen', 'localhost'],
      GOOD_ENV,
      'GUARD_CONFIG_INVALID_VALUE',
      /"listen".*"localhost".*host:port/,
    ],
    [
      'an out-of-range integer',
      ['--rate-limit', '0'],
      GOOD_ENV,
      'GUARD_CONFIG_INVALID_VALUE',
      /"rate_limit".*got 0.*from 1 to/,
    ],
    [
      'a non-integer',
      ['--silent-after-s', 'soon'],
      GOOD_ENV,
      'GUARD_CONFIG_INVALID_VALUE',
      /"silent_after_s".*"soon".*an integer/,
    ],
    [
      'a secret as a flag',
      ['--admin-token', 'x'],
      GOOD_ENV,
      'GUARD_CONFIG_INVALID_VALUE',
      /not accepted as a flag/,
    ],
    [
      'an unknown key in the file',
      ['--config', badFile],
      GOOD_ENV,
      'GUARD_CONFIG_UNKNOWN_KEY',
      /"rate_limt"/,
    ],
    [
      'a config file that is not JSON',
      ['--config', notJson],
      GOOD_ENV,
      'GUARD_CONFIG_UNREADABLE',
      /not valid JSON/,
    ],
    [
      'no enroll secret',
      [],
      { TOOLGUARD_COLLECTOR_ADMIN_TOKEN: 'admin-token-0123456789' },
      'GUARD_CONFIG_INVALID_VALUE',
      /"enroll_secret".*not set/,
    ],
    [
      'a short admin token',
      [],
      { ...GOOD_ENV, TOOLGUARD_COLLECTOR_ADMIN_TOKEN: 'short' },
      'GUARD_CONFIG_INVALID_VALUE',
      /"admin_token".*at least 16/,
    ],
    [
      'tls_cert without tls_key',
      ['--tls-cert', '/nonexistent.pem'],
      GOOD_ENV,
      'GUARD_CONFIG_INVALID_VALUE',
      /tls_key/,
    ],
    [
      'an admin token equal to the enroll secret',
      [],
      { ...GOOD_ENV, TOOLGUARD_COLLECTOR_ADMIN_TOKEN: GOOD_ENV.TOOLGUARD_COLLECTOR_ENROLL_SECRET },
      'GUARD_CONFIG_INVALID_VALUE',
      /"admin_token".*same value as enroll_secret/,
    ],
    [
      'a body limit smaller than the largest event',
      ['--max-body-bytes', '65536'],
      GOOD_ENV,
      'GUARD_CONFIG_INVALID_VALUE',
      /"max_body_bytes".*got 65536.*from 262145/,
    ],
    [
      'an allowed_hosts entry with a scheme',
      ['--allowed-hosts', 'collector.test,https://collector.test'],
      GOOD_ENV,
      'GUARD_CONFIG_INVALID_VALUE',
      /"allowed_hosts".*"https:\/\/collector.test".*host names or IP addresses/,
    ],
    [
      'an unreadable secret file',
      ['--enroll-secret-file', '/nonexistent/secret'],
      GOOD_ENV,
      'GUARD_CONFIG_UNREADABLE',
      /enroll_secret_file/,
    ],
  ])('refuses %s (exit 6, key and expectation, no stack)', (_name, args, env, code, pattern) => {
    const r = run(args as string[], env as Record<string, string>);
    expect(r.status).toBe(6);
    expect(r.stderr).toContain(code);
    expect(r.stderr).toMatch(pattern as RegExp);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('usage errors', () => {
  it('refuses an unknown flag as a usage error (exit 2, GUARD_CLI_USAGE)', () => {
    const r = run(['--bogus', 'x']);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(
      "guard-collector: unknown option '--bogus' [GUARD_CLI_USAGE]\nSee `guard-collector --help`.\n",
    );
  });
});

describe('start failures', () => {
  it('exits 1 with a message when the port is taken', async () => {
    const first = await spawnCollectorProcess();
    try {
      const port = new URL(first.url).port;
      const r = run(['--listen', `127.0.0.1:${port}`]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/cannot start: .*EADDRINUSE/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      await first.stop();
    }
  });

  it('exits 1 when the database cannot be created', () => {
    const blocker = join(dir, 'not-a-dir');
    writeFileSync(blocker, 'x');
    const r = spawnSync(process.execPath, [BIN, '--listen', '127.0.0.1:0', '--db', join(blocker, 'c.db')], {
      env: { PATH: process.env.PATH ?? '', ...GOOD_ENV },
      encoding: 'utf8',
      timeout: 15_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot start/);
  });
});

describe('lifecycle', () => {
  it('reads secrets from files and the config file, stops on SIGTERM (exit 0), and keeps its data across a restart', async () => {
    const secretFile = join(dir, 'enroll.secret');
    writeFileSync(secretFile, 'file-enroll-secret-0123456789\n', { mode: 0o600 });
    const cfg = join(dir, 'collector.json');
    writeFileSync(cfg, JSON.stringify({ enroll_secret_file: secretFile, silent_after_s: 120 }));
    const dbFile = join(dir, 'life.db');
    const first = await spawnCollectorProcess({
      dbFile,
      args: ['--config', cfg],
      env: { TOOLGUARD_COLLECTOR_ENROLL_SECRET: '' },
    });
    const token = await enrollDevice(first.url, 'file-enroll-secret-0123456789', 'dev-life');
    const ev = heartbeatEvent('dev-life', 1);
    const post = (url: string): Promise<Response> =>
      fetch(`${url}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
        body: ndjson([ev]),
      });
    expect(await (await post(first.url)).json()).toEqual({ accepted: 1, duplicates: 0 });
    expect(await first.stop()).toBe(0);

    const second = await spawnCollectorProcess({
      dbFile,
      args: ['--config', cfg],
      adminToken: first.adminToken,
      env: { TOOLGUARD_COLLECTOR_ENROLL_SECRET: '' },
    });
    try {
      // the token survives the restart, and the replay is a duplicate
      expect(await (await post(second.url)).json()).toEqual({ accepted: 0, duplicates: 1 });
      const devices = (await (
        await fetch(`${second.url}/v1/devices`, { headers: { authorization: `Bearer ${first.adminToken}` } })
      ).json()) as { devices: { id: string }[]; silent_after_s: number };
      expect(devices.devices.map((d) => d.id)).toEqual(['dev-life']);
      expect(devices.silent_after_s).toBe(120);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });
});
