/**
 * `guardctl package`: builds the endpoint package (.deb/.rpm/.msi/.pkg) with the organisation's
 * config baked in, so a fleet rollout needs no hand-written config.json (like `fleetctl package`).
 * Owns turning the flags into the two files the package installs — config.json (collector URL,
 * enroll secret file, trusted keys) and the enroll secret (readable only by the service) — and
 * checking them with the same loader guardd starts with before anything is built. The builds
 * themselves are installers/build-package.sh (deb, rpm, msi) and installers/macos/build-pkg.sh
 * (pkg, on a Mac), so it runs in a toolguard checkout after `npm run build`.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GuardError } from '../../common/errors.js';
import { loadConfig } from '../../config/load-config.js';
import { parsePublicKey, parseTrustedKeys } from '../../policy/keys.js';
import type { GuardctlCommand } from '../command.js';
import { optionList } from './policy-common.js';

/**
 * Where each package installs the secret (config.json's collector.enroll_secret_file names it):
 * beside config.json in the platform's config directory (src/common/platform-paths.ts), root:root
 * 0600 on Linux, root:wheel 0600 on macOS, SYSTEM and Administrators only on Windows.
 */
export const ENROLL_SECRET_FILE = {
  deb: '/etc/toolguard/enroll-secret',
  rpm: '/etc/toolguard/enroll-secret',
  pkg: '/Library/Application Support/toolguard/enroll-secret',
  msi: 'C:\\ProgramData\\toolguard\\enroll-secret',
} as const;

/** Secrets are a few dozen characters; the agent reads at most 4096 (collector-client.ts). */
const MAX_SECRET_BYTES = 4096;
/** A PEM public key is ~113 bytes; anything this large is not one. */
const MAX_KEY_FILE_BYTES = 16 * 1024;

type Format = keyof typeof ENROLL_SECRET_FILE;
/** Who may read the installed secret, per format (for the summary). */
const SECRET_READERS: Record<Format, string> = {
  deb: 'root:root 0600',
  rpm: 'root:root 0600',
  pkg: 'root:wheel 0600',
  msi: 'SYSTEM and Administrators only',
};
const ALL_FORMATS = Object.keys(ENROLL_SECRET_FILE) as Format[];

export interface BakedConfigInput {
  readonly collectorUrl: unknown;
  readonly enrollSecretFile: unknown;
  readonly trustedKeyFiles: readonly string[];
  /** The package format: where its secret file goes (default deb). */
  readonly format?: Format;
}

export interface BakedConfig {
  /** The config.json the package installs (0644; a conffile / never overwritten). */
  readonly configJson: string;
  /** The enroll secret file's content (installed readable by the service only). */
  readonly secret: string;
  readonly collectorUrl: string;
  /** keyids of the trusted keys, in the order given. */
  readonly keyids: readonly string[];
}

/**
 * Checks the flags and renders the package's config files. Throws GUARD_PACKAGE_BAD_COLLECTOR_URL,
 * GUARD_PACKAGE_SECRET_UNREADABLE or GUARD_PACKAGE_BAD_TRUSTED_KEY; the rendered config is then
 * loaded with guardd's own loader (a GUARD_CONFIG_* error there would be a bug here).
 */
export function bakeConfig(input: BakedConfigInput): BakedConfig {
  const collectorUrl = checkCollectorUrl(input.collectorUrl);
  const secret = readSecret(input.enrollSecretFile);
  if (input.trustedKeyFiles.length === 0)
    throw new GuardError(
      'GUARD_PACKAGE_BAD_TRUSTED_KEY',
      'no --trusted-key given: without one guardd can verify no policy',
    );
  const keys = input.trustedKeyFiles.map(readPublicKey);
  const config = {
    '//': 'Baked in by `guardctl package`: the collector, the enrollment secret file (root:root 0600) and the keys trusted to sign the policy. Keys: docs/config.md.',
    collector: { url: collectorUrl, enroll_secret_file: ENROLL_SECRET_FILE[input.format ?? 'deb'] },
    policy: { trusted_keys: keys.map((k) => k.pem) },
  };
  const configJson = `${JSON.stringify(config, null, 2)}\n`;
  const dir = mkdtempSync(join(tmpdir(), 'tg-bake-check-'));
  try {
    const file = join(dir, 'config.json');
    writeFileSync(file, configJson, { mode: 0o600 });
    const loaded = loadConfig({ file, required: true, env: {}, managedPreferencesFile: null });
    parseTrustedKeys(loaded['policy.trusted_keys']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { configJson, secret: `${secret}\n`, collectorUrl, keyids: keys.map((k) => k.keyid) };
}

function checkCollectorUrl(raw: unknown): string {
  const bad = (why: string): GuardError =>
    new GuardError('GUARD_PACKAGE_BAD_COLLECTOR_URL', `--collector-url ${JSON.stringify(raw)}: ${why}`, {
      url: typeof raw === 'string' ? raw : null,
    });
  if (typeof raw !== 'string' || raw === '') throw bad('required');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw bad('not an absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw bad('must be https:// (or http://)');
  if (url.hostname === '') throw bad('has no host');
  // The config is readable by every user of the machine: a password in it would be everyone's.
  if (url.username !== '' || url.password !== '') throw bad('must not carry credentials');
  if (url.search !== '' || url.hash !== '') throw bad('must not carry a query or fragment');
  return raw.replace(/\/+$/, '');
}

function readSecret(file: unknown): string {
  if (typeof file !== 'string' || file === '')
    throw new GuardError('GUARD_PACKAGE_SECRET_UNREADABLE', '--enroll-secret-file is required');
  let text: string;
  try {
    if (statSync(file).size > MAX_SECRET_BYTES)
      throw new Error(`larger than ${MAX_SECRET_BYTES} bytes: not an enroll secret`);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new GuardError(
      'GUARD_PACKAGE_SECRET_UNREADABLE',
      `cannot read the enroll secret file ${file}: ${(err as Error).message}`,
      { file },
    );
  }
  const secret = text.trim();
  if (secret === '' || /[\r\n]/.test(secret))
    throw new GuardError(
      'GUARD_PACKAGE_SECRET_UNREADABLE',
      `the enroll secret file ${file} must hold the secret on one line`,
      { file },
    );
  return secret;
}

function readPublicKey(file: string): { pem: string; keyid: string } {
  let text: string;
  try {
    if (statSync(file).size > MAX_KEY_FILE_BYTES) throw new Error('too large for a public key');
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new GuardError(
      'GUARD_PACKAGE_BAD_TRUSTED_KEY',
      `cannot read the trusted key file ${file}: ${(err as Error).message}`,
      { file },
    );
  }
  try {
    return { pem: `${text}\n`, keyid: parsePublicKey(text).keyid };
  } catch (err) {
    throw new GuardError('GUARD_PACKAGE_BAD_TRUSTED_KEY', `${file}: ${(err as Error).message}`, { file });
  }
}

/** The checkout this guardctl runs from (dist/cli/commands/ → the repository root). */
function checkoutRoot(): string {
  // Not `new URL(…, import.meta.url)`: the packaging tests read those as files the payload must carry.
  return resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
}

/** Runs a build script; its log goes to guardctl's stderr, its last stdout line is the package. */
function runBuild(
  script: string,
  args: readonly string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string }> {
  return new Promise((res, rej) => {
    const child = spawn('bash', [script, ...args], {
      cwd: checkoutRoot(),
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('utf8');
    });
    child.once('error', rej);
    child.once('close', (code) => res({ code, stdout }));
  });
}

export const packageCommand: GuardctlCommand = {
  name: 'package',
  summary: "Build the endpoint package with the organisation's config baked in (run in a checkout)",
  options: [
    { flags: '--collector-url <url>', description: 'base URL agents reach guard-collector at (https://...)' },
    { flags: '--enroll-secret-file <file>', description: "file holding the collector's enrollment secret" },
    {
      flags: '--trusted-key <file...>',
      description: 'public key file(s) trusted to sign the policy (PEM from `policy keygen`); repeatable',
    },
    { flags: '--format <format>', description: 'deb (default), rpm, msi or pkg (pkg: on a Mac)' },
    {
      flags: '--win-runtime <dir>',
      description: 'msi: dir with toolguard-service.exe (WinSW x64) and better_sqlite3.node (win32-x64)',
    },
    { flags: '--out <dir>', description: 'output directory (default: build/packages)' },
  ],
  examples: [
    'guardctl package --collector-url https://collector.example.com --enroll-secret-file enroll.secret --trusted-key signer1.pub',
    'guardctl package --collector-url https://collector.example.com --enroll-secret-file enroll.secret --trusted-key a.pub --trusted-key b.pub --format rpm --out dist-pkg',
    'guardctl package --collector-url https://collector.example.com --enroll-secret-file enroll.secret --trusted-key signer1.pub --format msi --win-runtime win-runtime/',
  ],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const format = typeof ctx.options.format === 'string' ? ctx.options.format : 'deb';
    if (!(ALL_FORMATS as readonly string[]).includes(format))
      throw new GuardError(
        'GUARD_CLI_USAGE',
        `--format ${format}: expected one of ${ALL_FORMATS.join(', ')}`,
      );
    if (format === 'pkg' && process.platform !== 'darwin')
      throw new GuardError(
        'GUARD_PACKAGE_UNSUPPORTED_FORMAT',
        '--format pkg: a macOS package is built on a Mac (pkgbuild, productbuild); run this there',
        { format },
      );
    const baked = bakeConfig({
      collectorUrl: ctx.options.collectorUrl,
      enrollSecretFile: ctx.options.enrollSecretFile,
      trustedKeyFiles: optionList(ctx.options.trustedKey).map((f) => resolve(f)),
      format: format as Format,
    });
    const script = join(
      checkoutRoot(),
      format === 'pkg' ? 'installers/macos/build-pkg.sh' : 'installers/build-package.sh',
    );
    if (!existsSync(script))
      throw new GuardError(
        'GUARD_PACKAGE_BUILD_FAILED',
        `${script} is missing: guardctl package runs in a toolguard checkout, not from an installed package`,
      );
    const out = resolve(typeof ctx.options.out === 'string' ? ctx.options.out : 'build/packages');
    const stage = mkdtempSync(join(tmpdir(), 'tg-bake-'));
    try {
      writeFileSync(join(stage, 'config.json'), baked.configJson, { mode: 0o644 });
      writeFileSync(join(stage, 'enroll-secret'), baked.secret, { mode: 0o600 });
      const env: Record<string, string> = { TOOLGUARD_PKG_CONFIG_DIR: stage, TOOLGUARD_PKG_OUT: out };
      if (typeof ctx.options.winRuntime === 'string')
        env.TOOLGUARD_WIN_RUNTIME = resolve(ctx.options.winRuntime);
      const r = await runBuild(script, format === 'pkg' ? [] : [format], env);
      const pkg = r.stdout.trim().split('\n').at(-1) ?? '';
      if (r.code !== 0 || !existsSync(pkg))
        throw new GuardError(
          'GUARD_PACKAGE_BUILD_FAILED',
          `build-package.sh ${format} failed (exit ${r.code})`,
          {
            format,
          },
        );
      const data = {
        format,
        package: pkg,
        collector_url: baked.collectorUrl,
        enroll_secret_file: ENROLL_SECRET_FILE[format as Format],
        trusted_keyids: baked.keyids,
      };
      const text = [
        `package       ${pkg}`,
        `collector     ${baked.collectorUrl}`,
        `enroll secret ${ENROLL_SECRET_FILE[format as Format]} (${SECRET_READERS[format as Format]}; in the package: treat the package as a secret)`,
        `trusted keys  ${baked.keyids.join(', ')}`,
      ].join('\n');
      return { data, text };
    } finally {
      rmSync(stage, { recursive: true, force: true });
    }
  },
};
