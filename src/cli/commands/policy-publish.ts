/**
 * `guardctl policy publish <body>`: lint (every error, nothing uploaded when there is one), sign
 * with the given key(s), and upload to the collector's admin API (`POST /v1/admin/policy`), which
 * verifies it, refuses a version not above the served one, replaces its policy file and records
 * who published which version when, the diff and the message (`GET /v1/admin/policy/history`).
 */
import { createHash } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { ERROR_CODES, type ErrorCode, GuardError } from '../../common/errors.js';
import { signEnvelope } from '../../policy/dsse.js';
import { parsePrivateKey } from '../../policy/keys.js';
import { formatDiff, type PolicyDiff } from '../../policy/policy-diff.js';
import { POLICY_PAYLOAD_TYPE, type PolicyBody } from '../../policy/policy-types.js';
import type { GuardctlCommand } from '../command.js';
import { lintedBody, optionList, readTextFile } from './policy-common.js';

/** The upload gives up after this long (ms): a publication is one small request. */
const PUBLISH_TIMEOUT_MS = 30_000;

export const policyPublishCommand: GuardctlCommand = {
  name: 'policy publish',
  summary: "Lint, sign and upload a policy body to the collector's admin API (recorded with who, when, diff)",
  args: [{ syntax: '<body>', description: 'the unsigned policy body (JSON)' }],
  options: [
    { flags: '--key <file...>', description: 'private key file(s) (PEM); repeat for several signers' },
    { flags: '--collector <url>', description: 'collector base URL, e.g. https://guard.example:8443' },
    { flags: '--admin-token-file <file>', description: "file holding the collector's admin token" },
    { flags: '--message <text>', description: 'why this version (recorded in the history)' },
    { flags: '--by <name>', description: 'who publishes (recorded; default: user@host)' },
  ],
  examples: [
    'guardctl policy publish ban-list.json --key signer.key --collector https://guard.example:8443 --admin-token-file admin.token --message "ban cursor-agent"',
  ],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const [bodyFile] = ctx.args;
    if (!bodyFile) throw new GuardError('GUARD_CLI_USAGE', 'policy publish needs the body file');
    const keyFiles = optionList(ctx.options.key);
    if (keyFiles.length === 0)
      throw new GuardError('GUARD_CLI_USAGE', 'policy publish needs --key <private key file>');
    const collector = typeof ctx.options.collector === 'string' ? ctx.options.collector : '';
    let base: URL;
    try {
      base = new URL(collector);
      if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('not http(s)');
    } catch {
      throw new GuardError(
        'GUARD_CLI_USAGE',
        'policy publish needs --collector <http(s) URL of the collector>',
      );
    }
    const tokenFile = typeof ctx.options.adminTokenFile === 'string' ? ctx.options.adminTokenFile : '';
    if (!tokenFile) throw new GuardError('GUARD_CLI_USAGE', 'policy publish needs --admin-token-file <file>');
    const token = readTextFile(tokenFile, 'admin token file').trim();
    const by = typeof ctx.options.by === 'string' ? ctx.options.by : `${userInfo().username}@${hostname()}`;
    const message = typeof ctx.options.message === 'string' ? ctx.options.message : '';

    const input = lintedBody(bodyFile, 'publish');
    const keys = keyFiles.map((f) => parsePrivateKey(readTextFile(f, 'private key')));
    const envelope = signEnvelope(input.bodyBytes, POLICY_PAYLOAD_TYPE, keys);

    const url = new URL('/v1/admin/policy', base);
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ envelope, by, message }),
        signal: AbortSignal.timeout(PUBLISH_TIMEOUT_MS),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new GuardError(
        'GUARD_CLI_PUBLISH_FAILED',
        `cannot reach the collector at ${base.origin}: ${cause}`,
      );
    }
    const answer = (await res.json().catch(() => null)) as Record<string, unknown> | null;
    if (res.status !== 201 || answer === null) {
      const e = (answer?.error ?? {}) as { code?: string; message?: string };
      const code =
        typeof e.code === 'string' && e.code in ERROR_CODES
          ? (e.code as ErrorCode)
          : 'GUARD_CLI_PUBLISH_FAILED';
      throw new GuardError(
        code,
        `the collector refused the publication (HTTP ${res.status}): ${e.message ?? 'no reason given'}`,
        {
          status: res.status,
        },
      );
    }
    const body = input.body as PolicyBody;
    const diff = answer.diff as PolicyDiff | null;
    const sha256 = createHash('sha256').update(input.bodyBytes).digest('hex');
    const verified = answer.verified === true;
    return {
      data: answer,
      text: [
        `published policy v${body.version} (sha256 ${sha256.slice(0, 16)}…) to ${base.origin} as ${by}`,
        verified
          ? 'the collector verified the signature(s) against its trusted keys'
          : 'note: the collector has no policy_trusted_keys: it checked the shape only (devices still verify)',
        diff === null ? 'first publication on this collector' : `changes:\n${formatDiff(diff)}`,
      ].join('\n'),
    };
  },
};
