import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeError, EXIT, exitCodeFor } from '../../src/cli/error-message.js';
import { ERROR_CODES, GuardError } from '../../src/common/errors.js';
import { ROOT, runGuardctl } from '../helpers/daemon.js';

/** The codes of the "Exit codes" table in docs/guardctl.md (the one operators read). */
function documentedExitCodes(): number[] {
  const doc = readFileSync(join(ROOT, 'docs', 'guardctl.md'), 'utf8');
  const table = doc.split('\n## Exit codes\n')[1]?.trimStart().split('\n\n')[0] ?? '';
  return [...table.matchAll(/^\| (\d+) \|/gm)].map((m) => Number(m[1]));
}

describe('guardctl', () => {
  it('exits 2 on an unknown command or option', () => {
    expect(runGuardctl(['frobnicate']).code).toBe(2);
    expect(runGuardctl(['status', '--bogus']).code).toBe(2);
  });

  it('prints its version and help', () => {
    const v = runGuardctl(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^guardctl \d+\.\d+\.\d+\S*\n$/);
    const h = runGuardctl(['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/status/);
  });

  it('maps every error code to an exit code of the table in docs/guardctl.md, which lists each one once', () => {
    const documented = documentedExitCodes();
    expect(documented).toEqual(Object.values(EXIT));
    for (const code of Object.keys(ERROR_CODES)) expect(documented).toContain(exitCodeFor(code));
    expect(exitCodeFor('GUARD_CONTROL_DAEMON_NOT_RUNNING')).toBe(3);
    expect(exitCodeFor('GUARD_POLICY_ROLLBACK')).toBe(5);
    expect(exitCodeFor('GUARD_CONFIG_UNKNOWN_KEY')).toBe(6);
  });

  it('a local dir another user could change is not sent to the config file for its fix', () => {
    // the message says it (run as the directory's owner, or --local-dir); the config hint misled
    const err = new GuardError('GUARD_CONFIG_UNSAFE_DIR', 'local dir /x: /x belongs to uid 1000');
    const d = describeError(err, { program: 'guardd', configFile: '/x/.toolguard/config.json' });
    expect(d).toMatchObject({ code: 'GUARD_CONFIG_UNSAFE_DIR', exitCode: 6, hint: null });
  });
});
