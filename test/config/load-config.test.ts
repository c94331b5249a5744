import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isGuardError } from '../../src/common/errors.js';
import { loadConfig } from '../../src/config/load-config.js';
import { envVarOf, SETTINGS } from '../../src/config/settings.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
const write = (name: string, content: string): string => {
  const f = join(dir, name);
  writeFileSync(f, content);
  return f;
};

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isGuardError(err)) return err.code;
    throw err;
  }
  throw new Error('expected a GuardError');
}

describe('loadConfig', () => {
  it('gives every setting its default and freezes the result', () => {
    const c = loadConfig({ env: {} });
    expect(c['policy.threshold']).toBe(1);
    expect(c['log.level']).toBe('info');
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.keys(c).sort()).toEqual(Object.keys(SETTINGS).sort());
  });

  it('reads nested and dotted keys from the file, env over file, overrides over env', () => {
    const f = write(
      'ok.json',
      JSON.stringify({
        collector: { url: 'https://c.example' },
        'policy.threshold': 2,
        log: { level: 'debug' },
      }),
    );
    const c = loadConfig({
      file: f,
      env: { [envVarOf('log.level')]: 'warn', TOOLGUARD_DEVICE_TAGS: 'a, b' },
      overrides: { 'policy.threshold': 3 },
    });
    expect(c['collector.url']).toBe('https://c.example');
    expect(c['log.level']).toBe('warn');
    expect(c['device.tags']).toEqual(['a', 'b']);
    expect(c['policy.threshold']).toBe(3);
  });

  const bad: [string, () => unknown, string, RegExp][] = [
    [
      'unknown key',
      () => loadConfig({ file: write('u.json', '{"collector":{"urll":"x"}}'), env: {} }),
      'GUARD_CONFIG_UNKNOWN_KEY',
      /collector\.urll/,
    ],
    [
      'unknown top-level key',
      () => loadConfig({ file: write('u2.json', '{"nope":1}'), env: {} }),
      'GUARD_CONFIG_UNKNOWN_KEY',
      /"nope"/,
    ],
    [
      'wrong type',
      () => loadConfig({ file: write('t.json', '{"policy":{"threshold":"two"}}'), env: {} }),
      'GUARD_CONFIG_INVALID_VALUE',
      /policy\.threshold.*"two".*integer/,
    ],
    [
      'out of range',
      () => loadConfig({ file: write('r.json', '{"policy":{"threshold":0}}'), env: {} }),
      'GUARD_CONFIG_INVALID_VALUE',
      /from 1 to 16/,
    ],
    [
      'bad enum',
      () => loadConfig({ file: write('e.json', '{"log":{"level":"loud"}}'), env: {} }),
      'GUARD_CONFIG_INVALID_VALUE',
      /one of fatal/,
    ],
    [
      'device id the collector would refuse',
      () => loadConfig({ file: write('d.json', '{"device":{"id":"my laptop"}}'), env: {} }),
      'GUARD_CONFIG_INVALID_VALUE',
      /device\.id.*letters, digits/,
    ],
    [
      'bad env value',
      () => loadConfig({ env: { TOOLGUARD_SHIPPER_INTERVAL_MS: 'soon' } }),
      'GUARD_CONFIG_INVALID_VALUE',
      /TOOLGUARD_SHIPPER_INTERVAL_MS/,
    ],
    [
      'not JSON',
      () => loadConfig({ file: write('j.json', '{oops'), env: {} }),
      'GUARD_CONFIG_UNREADABLE',
      /not valid JSON/,
    ],
    [
      'not an object',
      () => loadConfig({ file: write('a.json', '[1]'), env: {} }),
      'GUARD_CONFIG_UNREADABLE',
      /JSON object/,
    ],
    [
      'missing required file',
      () => loadConfig({ file: join(dir, 'missing.json'), required: true, env: {} }),
      'GUARD_CONFIG_UNREADABLE',
      /cannot read/,
    ],
  ];
  it.each(bad)('refuses %s with its code, the key and the expectation', (_name, fn, code, message) => {
    expect(codeOf(fn)).toBe(code);
    expect(() => fn()).toThrow(message);
  });

  it('does not print a secret value in the error', () => {
    const f = write('s.json', '{"collector":{"enroll_secret": 12345}}');
    expect(() => loadConfig({ file: f, env: {} })).toThrow(/wrong type/);
    expect(() => loadConfig({ file: f, env: {} })).not.toThrow(/12345/);
  });

  it('treats a missing optional file as defaults', () => {
    expect(loadConfig({ file: join(dir, 'absent.json'), env: {} })['collector.url']).toBe('');
  });
});
