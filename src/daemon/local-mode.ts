/**
 * Owns `guardd --local` (what `npm start` runs): everything a developer needs to see toolguard work
 * from a fresh clone, unprivileged, in one directory (default ./.toolguard):
 *   - a development signing key (made once, kept; this local config trusts only it),
 *   - the example ban list from policy/ signed at every start with fresh dates and a version that
 *     only goes up (seconds since the epoch), so anti-rollback accepts it,
 *   - an embedded guard-collector on 127.0.0.1 (ephemeral port) serving that policy and storing events,
 *   - a config file pointing guardd at all of it, which `npx guardctl` finds too,
 *   - the enforcement scope that keeps the demo safe on any machine, by anyone, root included:
 *     it acts only on processes started after guardd (unprivileged: only its own user's; root: none
 *     unless `--enforce`), and its install sensor watches only a demo home and a demo npm prefix
 *     inside the local directory (`<dir>/home`, `<dir>/npm-global`), never the real npm trees or
 *     policy path artifacts of anyone. Everything else it matches is reported as "would block".
 * Nothing here runs in a real deployment; a real one is configured by MDM.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from '../common/logger.js';
import { makePrivateDir, type PrivateDirOptions } from '../common/private-dir.js';
import { LocalEnforcementScope, ownStartTime } from '../enforcement/enforcement-scope.js';
import { signEnvelope } from '../policy/dsse.js';
import { generateKeyPair, parsePrivateKey } from '../policy/keys.js';
import { POLICY_PAYLOAD_TYPE, type PolicyBody } from '../policy/policy-types.js';

/** Local policies are valid this long from each start: long enough for a demo, short enough to show expiry exists. */
const LOCAL_POLICY_VALIDITY_DAYS = 14;

/** The control socket directory of `guardd --local --local-dir <dir>`. */
export function localSocketDir(dir: string): string {
  return join(resolve(dir), 'run');
}

/** How errors about the local dir name it (private-dir.ts). */
export const LOCAL_DIR_OPTIONS: PrivateDirOptions = {
  key: 'local_dir',
  hint: "run as that directory's owner, or pass --local-dir in a directory only you (or root) can change",
};

/** Local mode's state dir (`paths.state_dir` of the config it writes) for the local dir `dir`. */
export function localStateDir(dir: string): string {
  return join(resolve(dir), 'state');
}

export interface LocalMode {
  readonly dir: string;
  readonly configFile: string;
  readonly policyFile: string;
  readonly collectorUrl: string;
  readonly policyVersion: number;
  readonly ruleCount: number;
  /** The demo npm prefix: `npm install -g --prefix <it> <pkg>` installs where the install sensor looks. */
  readonly npmPrefix: string;
  /** What this guardd may act on (given to the enforcer, described by the banner). */
  readonly scope: LocalEnforcementScope;
  /** The embedded collector, already listening; guardd closes it when it stops. */
  readonly collector: { close(): Promise<void> };
}

export interface PrepareLocalModeOptions {
  readonly dir: string;
  /** The unsigned example ban list; default: policy/example-policy.json of this package. */
  readonly policyBodyFile?: string;
  readonly now?: number;
  /** `--enforce`: as root, act on processes any user starts from now on (default: root only records). */
  readonly enforce?: boolean;
  /** guardd's uid (default process.getuid(); -1 where there is none). */
  readonly uid?: number;
  /** Logger of the embedded collector. */
  readonly logger: Logger;
}

/** Prepares the local directory (key, signed policy, secrets, config). Idempotent across restarts. */
export async function prepareLocalMode(options: PrepareLocalModeOptions): Promise<LocalMode> {
  const dir = resolve(options.dir);
  makePrivateDir(dir, 0o700, LOCAL_DIR_OPTIONS);
  const now = options.now ?? Date.now();
  const uid = options.uid ?? process.getuid?.() ?? -1;
  // The install sensor's whole world: a demo home (policy `~/…` paths expand into it) and a demo
  // npm prefix. They exist from the start, so the sensor watches them from its first scan.
  const demoHome = join(dir, 'home');
  const npmPrefix = join(dir, 'npm-global');
  const demoRoot = join(npmPrefix, process.platform === 'win32' ? 'node_modules' : 'lib/node_modules');
  mkdirSync(demoHome, { recursive: true, mode: 0o700 });
  mkdirSync(demoRoot, { recursive: true, mode: 0o700 });

  const keyFile = join(dir, 'dev-signing-key.pem');
  const pubFile = join(dir, 'dev-signing-key.pub.pem');
  if (!existsSync(keyFile) || !existsSync(pubFile)) {
    const pair = generateKeyPair();
    writeFileSync(keyFile, pair.privateKeyPem, { mode: 0o600 });
    writeFileSync(pubFile, pair.publicKeyPem, { mode: 0o644 });
  }
  const privateKey = parsePrivateKey(readFileSync(keyFile, 'utf8'));
  const publicKeyPem = readFileSync(pubFile, 'utf8');

  const bodyFile =
    options.policyBodyFile ?? new URL('../../policy/example-policy.json', import.meta.url).pathname;
  const example = JSON.parse(readFileSync(bodyFile, 'utf8')) as PolicyBody;
  const body: PolicyBody = {
    ...example,
    version: Math.floor(now / 1000),
    issued_at: new Date(now).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    expires_at: new Date(now + LOCAL_POLICY_VALIDITY_DAYS * 86_400_000)
      .toISOString()
      .replace(/\.\d{3}Z$/, 'Z'),
  };
  const policyFile = join(dir, 'policy.dsse.json');
  writeFileSync(
    policyFile,
    `${JSON.stringify(signEnvelope(JSON.stringify(body), POLICY_PAYLOAD_TYPE, [privateKey]), null, 2)}\n`,
  );

  const enrollSecret = readOrCreateSecret(join(dir, 'enroll-secret'));
  const adminToken = readOrCreateSecret(join(dir, 'collector-admin-token'));

  // The collector listens before the config is written, so the config names its real port.
  const collectorDb = join(dir, 'collector.db');
  // Loaded only here: the endpoint packages do not carry the collector (it has its own package),
  // and guardd must start without it; local mode runs from a checkout, which has it.
  const { startCollector } = await import('../collector/collector-server.js');
  const collector = await startCollector({
    host: '127.0.0.1',
    port: 0,
    dbFile: collectorDb,
    policyFile,
    enrollSecret,
    adminToken,
    // One local agent: parsing on guardd's main thread is plenty and saves a thread's memory.
    ingestWorkers: 0,
    logger: options.logger.child({ component: 'collector' }),
  });

  const configFile = join(dir, 'config.json');
  const config = {
    '//': 'Written by `guardd --local` at every start. A real deployment gets its config from MDM.',
    paths: { state_dir: localStateDir(dir), socket_dir: localSocketDir(dir), bootstrap_policy: policyFile },
    collector: { url: collector.url, enroll_secret_file: join(dir, 'enroll-secret') },
    policy: { trusted_keys: [publicKeyPem], refresh_cron: '* * * * *', refresh_jitter_s: 0 },
    sensors: { install: { homes: [demoHome], extra_roots: [demoRoot], system_roots: false } },
    shipper: { interval_ms: 1000 },
    log: { level: 'warn' },
  };
  writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });

  return {
    dir,
    configFile,
    policyFile,
    collectorUrl: collector.url,
    policyVersion: body.version,
    ruleCount: body.rules.length,
    npmPrefix,
    scope: new LocalEnforcementScope({
      uid,
      enforceAsRoot: options.enforce === true,
      startTime: ownStartTime(),
      ownDir: dir,
    }),
    collector,
  };
}

function readOrCreateSecret(file: string): string {
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const secret = randomBytes(24).toString('base64url');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return secret;
}
