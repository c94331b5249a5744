/**
 * `guardctl policy init [--out file]`: a starting policy body that passes `guardctl policy lint`.
 * JSON has no comments and the schema allows no comment fields, so the body explains itself
 * through its own fields (each rule's `name` and `message`) and the command prints what each
 * top-level field means. Never overwrites: an existing `--out` file is GUARD_CLI_FILE_EXISTS.
 */
import { writeFileSync } from 'node:fs';
import { GuardError } from '../../common/errors.js';
import type { GuardctlCommand } from '../command.js';

/** Days the starting policy stays valid: devices refuse an expired policy, so the template must not expire soon. */
const TEMPLATE_VALID_DAYS = 365;
const DAY_MS = 86_400_000;

/** The starting body, issued now (to the second) and valid for TEMPLATE_VALID_DAYS. */
export function starterPolicy(now: number): Record<string, unknown> {
  const seconds = (ms: number): string =>
    new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
  return {
    schema: 'toolguard.policy/v1',
    version: 1,
    issued_at: seconds(now),
    expires_at: seconds(now + TEMPLATE_VALID_DAYS * DAY_MS),
    mode: 'monitor',
    rules: [
      {
        id: 'example-claude-code',
        name: 'Example rule: Claude Code (edit or remove; action block = kill and deny, warn = notify, audit = record only)',
        action: 'audit',
        message:
          'Claude Code is not approved on company machines. Shown to the user when the rule acts; say what to use instead.',
        url: 'https://intranet.example/approved-tools',
        process: {
          names: ['claude'],
          script_packages: ['@anthropic-ai/claude-code'],
        },
        packages: [{ ecosystem: 'npm', name: '@anthropic-ai/claude-code', range: '*' }],
      },
    ],
    exceptions: [],
  };
}

const EXPLANATION = `fields (the schema allows no comments; see docs/policy.md):
  version     raise it for every publication: devices refuse a version below (or equal to, with
              other content) the one they accepted
  issued_at   when you sign it; expires_at: devices refuse an expired policy, re-publish before
  mode        monitor = every block only warns ("would block"); enforce = rules act as written
  rules       each: id, name, action (block|warn|audit), message shown to the user, what it matches
              (process names/exe_globs/script_packages/markers, npm packages, paths)
  exceptions  per rule: users, groups, hosts or device tags it does not apply to, until expires_at
next: guardctl policy lint <file>; guardctl policy publish <file> --key … --collector … --admin-token-file …`;

export const policyInitCommand: GuardctlCommand = {
  name: 'policy init',
  summary: 'Write a starting policy body (passes lint) to edit, lint and publish',
  options: [
    { flags: '--out <file>', description: 'write the body here (default: stdout); never overwritten' },
  ],
  examples: ['guardctl policy init --out ban-list.json', 'guardctl policy init > ban-list.json'],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const body = starterPolicy(Date.now());
    const text = `${JSON.stringify(body, null, 2)}\n`;
    const out = typeof ctx.options.out === 'string' ? ctx.options.out : null;
    if (out === null) return { data: { out: null, body }, text: text.trimEnd() };
    try {
      // 'wx': created only when absent, atomically (no check-then-write race)
      writeFileSync(out, text, { flag: 'wx', mode: 0o644 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST')
        throw new GuardError(
          'GUARD_CLI_FILE_EXISTS',
          `${out} already exists; not overwritten (choose another --out)`,
          {
            file: out,
          },
        );
      throw new GuardError('GUARD_CLI_USAGE', `cannot write ${out}: ${(err as Error).message}`);
    }
    return { data: { out, body }, text: `wrote a starting policy to ${out}\n${EXPLANATION}` };
  },
};
