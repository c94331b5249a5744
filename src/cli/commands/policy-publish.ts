/**
 * `guardctl policy publish <body>`: lint (every error, nothing uploaded when there is one), sign
 * with the given key(s), and upload to the collector's admin API (`POST /v1/admin/policy`), which
 * verifies it, refuses a version not above the served one, stores it for every collector to serve
 * and records who published which version when, the diff and the message
 * (`GET /v1/admin/policy/history`). `--shadow` publishes it as the shadow candidate instead
 * (docs/policy.md "Shadow policies"). Also owns the admin request every publishing command makes
 * (`adminRequest`: collector URL, token file, who, the refusal mapped to its error code).
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
    {
      flags: '--shadow',
      description: 'publish as the shadow candidate: evaluated and reported by devices, never acted on',
    },
  ],
  examples: [
    'guardctl policy publish candidate.json --shadow --key signer.key --collector https://guard.example:8443 --admin-token-file admin.token',
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
    const admin = adminTarget(ctx.options, 'policy publish');
    const input = lintedBody(bodyFile, 'publish');
    const keys = keyFiles.map((f) => parsePrivateKey(readTextFile(f, 'private key')));
    const envelope = signEnvelope(input.bodyBytes, POLICY_PAYLOAD_TYPE, keys);
    const shadow = ctx.options.shadow === true;
    const answer = await adminRequest(admin, '/v1/admin/policy', {
      envelope,
      by: admin.by,
      message: admin.message,
      ...(shadow ? { channel: 'shadow' } : {}),
    });
    const base = admin.base;
    const by = admin.by;
    const body = input.body as PolicyBody;
    const diff = answer.diff as PolicyDiff | null;
    const sha256 = createHash('sha256').update(input.bodyBytes).digest('hex');
    const verified = answer.verified === true;
    return {
      data: answer,
      text: [
        `published ${shadow ? 'shadow ' : ''}policy v${body.version} (sha256 ${sha256.slice(0, 16)}…) to ${base.origin} as ${by}`,
        ...(shadow
          ? [
              'devices evaluate it beside the enforced policy and report what it would match (never acted on);',
              'see GET /v1/admin/policy/shadow, then `guardctl policy promote` to enforce it',
            ]
          : []),
        verified
          ? 'the collector verified the signature(s) against its trusted keys'
          : 'note: the collector has no policy_trusted_keys: it checked the shape only (devices still verify)',
        diff === null
          ? 'first publication on this collector'
          : `changes${shadow ? ' from the enforced policy' : ''}:\n${formatDiff(diff)}`,
      ].join('\n'),
    };
  },
};

/** Where and as whom an admin command talks to the collector. */
export interface AdminTarget {
  readonly base: URL;
  readonly token: string;
  readonly by: string;
  readonly message: string;
}

/** The `--collector`, `--admin-token-file`, `--by` and `--message` options, checked. */
export function adminTarget(options: Record<string, unknown>, command: string): AdminTarget {
  const collector = typeof options.collector === 'string' ? options.collector : '';
  let base: URL;
  try {
    base = new URL(collector);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    throw new GuardError('GUARD_CLI_USAGE', `${command} needs --collector <http(s) URL of the collector>`);
  }
  const tokenFile = typeof options.adminTokenFile === 'string' ? options.adminTokenFile : '';
  if (!tokenFile) throw new GuardError('GUARD_CLI_USAGE', `${command} needs --admin-token-file <file>`);
  const token = readTextFile(tokenFile, 'admin token file').trim();
  // A token with a line break or a control character inside cannot be a header value; fetch's
  // refusal would quote the whole header, the token with it, on the terminal and in CI logs.
  if (!/^[\x21-\x7e]+$/.test(token))
    throw new GuardError(
      'GUARD_CLI_USAGE',
      `${command}: the admin token file ${tokenFile} must hold one token (printable ASCII, no spaces or line breaks inside); it is not sent`,
    );
  const by = typeof options.by === 'string' ? options.by : `${userInfo().username}@${hostname()}`;
  const message = typeof options.message === 'string' ? options.message : '';
  return { base, token, by, message };
}

/**
 * POSTs `body` to the admin API at `path`; resolves with the JSON answer of a 200/201. A refusal
 * throws its error code when guardctl knows it (exit code by code), else GUARD_CLI_PUBLISH_FAILED.
 */
export async function adminRequest(
  target: AdminTarget,
  path: string,
  body: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const url = new URL(path, target.base);
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${target.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(PUBLISH_TIMEOUT_MS),
    });
  } catch (err) {
    // never the token, whatever a fetch error quotes
    const cause = String((err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message)
      .split(target.token)
      .join('[admin token]');
    throw new GuardError(
      'GUARD_CLI_PUBLISH_FAILED',
      `cannot reach the collector at ${target.base.origin}: ${cause}`,
    );
  }
  const answer = (await res.json().catch(() => null)) as Record<string, unknown> | null;
  if ((res.status !== 201 && res.status !== 200) || answer === null) {
    const e = (answer?.error ?? {}) as { code?: string; message?: string };
    const code =
      typeof e.code === 'string' && e.code in ERROR_CODES
        ? (e.code as ErrorCode)
        : 'GUARD_CLI_PUBLISH_FAILED';
    throw new GuardError(
      code,
      `the collector refused the request (HTTP ${res.status}): ${e.message ?? 'no reason given'}`,
      { status: res.status },
    );
  }
  return answer;
}
