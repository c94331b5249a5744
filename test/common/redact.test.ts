import { describe, expect, it } from 'vitest';
import { MAX_ARG_CHARS, MAX_ARGS, REDACTED, redactArgv } from '../../src/common/redact.js';

describe('redactArgv', () => {
  const cases: [string, string[], string[]][] = [
    ['flag then value', ['curl', '--token', 's3cr3t', 'x'], ['curl', '--token', REDACTED, 'x']],
    [
      'password flag',
      ['mysql', '-u', 'root', '--password', 'hunter2'],
      ['mysql', '-u', 'root', '--password', REDACTED],
    ],
    ['flag=value', ['app', '--api-key=abc123'], ['app', `--api-key=${REDACTED}`]],
    ['env assignment', ['env', 'GITHUB_TOKEN=ghp_abc', 'run'], ['env', `GITHUB_TOKEN=${REDACTED}`, 'run']],
    ['anthropic key anywhere', ['claude', 'sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA'], ['claude', REDACTED]],
    [
      'github token',
      ['git', 'push', 'https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/x'],
      ['git', 'push', `https://${REDACTED}@github.com/x`],
    ],
    [
      'url credentials',
      ['git', 'clone', 'https://bob:pa55@host/r.git'],
      ['git', 'clone', `https://bob:${REDACTED}@host/r.git`],
    ],
    [
      'auth header',
      ['curl', '-H', 'Authorization: Bearer abc.def'],
      ['curl', '-H', `Authorization: Bearer ${REDACTED}`],
    ],
    ['aws key id', ['aws', 'AKIAABCDEFGHIJKLMNOP'], ['aws', REDACTED]],
    [
      'harmless args kept',
      ['node', '/usr/lib/node_modules/x/cli.js', '--verbose'],
      ['node', '/usr/lib/node_modules/x/cli.js', '--verbose'],
    ],
  ];
  it.each(cases)('%s', (_n, input, expected) => {
    expect(redactArgv(input)).toEqual(expected);
  });

  it('replaces terminal control characters and caps sizes', () => {
    const out = redactArgv(['a\u001b[2Jb', 'x'.repeat(MAX_ARG_CHARS + 10), ...Array(MAX_ARGS + 5).fill('y')]);
    expect(out[0]).toBe('a\uFFFD[2Jb');
    expect(out[1]?.length).toBeLessThan(MAX_ARG_CHARS + 40);
    expect(out[1]).toMatch(/\[\+10 chars\]$/);
    expect(out).toHaveLength(MAX_ARGS + 1);
    expect(out.at(-1)).toBe('[+7 more arguments]');
  });
});
