import { describe, expect, it } from 'vitest';
import { exitCodeFor } from '../../src/cli/error-message.js';
import { ERROR_CODES } from '../../src/common/errors.js';
import { runGuardctl } from '../helpers/daemon.js';

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

  it('maps every error code to a documented exit code', () => {
    for (const code of Object.keys(ERROR_CODES))
      expect([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]).toContain(exitCodeFor(code));
    expect(exitCodeFor('GUARD_CONTROL_DAEMON_NOT_RUNNING')).toBe(3);
    expect(exitCodeFor('GUARD_POLICY_ROLLBACK')).toBe(5);
    expect(exitCodeFor('GUARD_CONFIG_UNKNOWN_KEY')).toBe(6);
  });
});
