// Starting a real guard-collector for a bench (bench/collector.bench.js, collector-store.bench.js,
// collector-heartbeat.bench.js, forwarder-formats.bench.js) and the load those benches send: the
// process from bin/guard-collector.js on a free loopback port with fresh secrets, enrollment, and
// schema-valid events built cheaply (the load generator shares the 2 cores with the collector).
// Plain JavaScript on dist/ like the benches themselves; not a bench (bench/run.js runs only
// *.bench.js).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { uuidv7 } from '../../dist/common/uuidv7.js';

const BIN = fileURLToPath(new URL('../../bin/guard-collector.js', import.meta.url));

/** A fresh enroll secret and admin token for one bench run. */
export function collectorSecrets() {
  return {
    enrollSecret: randomBytes(24).toString('base64url'),
    adminToken: randomBytes(24).toString('base64url'),
  };
}

/**
 * Spawns guard-collector on 127.0.0.1:0 with `args` (e.g. `--db f`, `--store-url u`), waits for its
 * "listening on" line; returns its URL, pid and `stop()` (SIGTERM and wait; safe to call again).
 */
export async function spawnCollector(secrets, args, { env = {}, nodeArgs = [], timeoutMs = 15_000 } = {}) {
  const proc = spawn(
    process.execPath,
    [...nodeArgs, BIN, '--listen', '127.0.0.1:0', '--log-level', 'warn', ...args],
    {
      env: {
        PATH: process.env.PATH,
        TOOLGUARD_COLLECTOR_ENROLL_SECRET: secrets.enrollSecret,
        TOOLGUARD_COLLECTOR_ADMIN_TOKEN: secrets.adminToken,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  proc.stdout.setEncoding('utf8');
  const url = await new Promise((resolve, reject) => {
    const t = setTimeout(
      () => reject(new Error(`collector did not start within ${timeoutMs} ms`)),
      timeoutMs,
    );
    proc.stdout.on('data', (s) => {
      out += s;
      const m = /guard-collector listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    });
    proc.once('exit', (code) => reject(new Error(`collector exited ${code}`)));
  });
  return {
    url,
    /** The process id (the bench reads its CPU time from /proc). */
    pid: proc.pid,
    stop: () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
      return new Promise((resolve) => {
        proc.once('exit', resolve);
        proc.kill('SIGTERM');
      });
    },
  };
}

/** Enrolls device `id` over HTTP; returns its token. */
export async function enroll(url, secrets, id) {
  const r = await fetch(`${url}/v1/enroll`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      enroll_secret: secrets.enrollSecret,
      device: { id, hostname: `${id}.corp.example`, os: 'linux', agent_version: '0.1.0' },
    }),
  });
  if (r.status !== 200) throw new Error(`enroll ${r.status}`);
  return (await r.json()).device_token;
}

/** One schema-valid process.blocked event as an NDJSON line (~600 bytes, like a real one). */
export function eventLine(deviceId, seq) {
  return JSON.stringify({
    id: uuidv7(),
    time: new Date().toISOString(),
    seq,
    device_id: deviceId,
    hostname: `${deviceId}.corp.example`,
    type: 'process.blocked',
    agent_version: '0.1.0',
    uid: 1000,
    user: 'alice',
    pid: 40_000 + (seq % 20_000),
    ppid: 1234,
    name: 'claude',
    exe: '/home/alice/.npm-global/lib/node_modules/@anthropic-ai/claude-code/cli.js',
    argv: ['node', '/home/alice/.npm-global/bin/claude', '--print', 'explain this repo'],
    start_time: 1_000_000 + seq,
    tty: '/dev/pts/3',
    rule: { id: 'claude-code', name: 'Claude Code', action: 'block' },
    reason: 'script_package',
    policy_version: 12,
    mode: 'enforce',
    outcome: { action_taken: 'killed', latency_ms: 41.5, error: null },
  });
}

/**
 * A body of `count` events built by string concatenation around a constant tail (the same bytes
 * eventLine produces), so the load generator stays cheap.
 */
export function batchBody(deviceId, firstSeq, count) {
  const sample = eventLine(deviceId, 1);
  const tail = sample.slice(sample.indexOf(',"device_id"'));
  const time = new Date().toISOString();
  let s = '';
  for (let i = 0; i < count; i++) s += `{"id":"${uuidv7()}","time":"${time}","seq":${firstSeq + i}${tail}\n`;
  return s;
}

/** The p-th percentile of an ascending array (NaN when empty). */
export function pct(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** POSTs one NDJSON body over `agent` (an http.Agent); resolves with the client-side latency, status and accepted count. */
export function postBatch(url, token, body, agent) {
  const u = new URL(url);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: '/v1/events',
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/x-ndjson',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => {
          let accepted = 0;
          try {
            accepted = JSON.parse(text).accepted ?? 0;
          } catch {}
          resolve({ ms: performance.now() - t0, status: res.statusCode, accepted });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
