/**
 * macOS managed preferences: the XML-plist parser (cross-checked against python3's plistlib),
 * dotted keys, hostile files refused with GUARD_CONFIG_UNREADABLE, the darwin plutil path (injected
 * converter), and loadConfig's precedence: defaults < JSON file < managed preferences < env < flags.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isGuardError } from '../../src/common/errors.js';
import { loadConfig } from '../../src/config/load-config.js';
import {
  defaultManagedPreferencesFile,
  parseXmlPlist,
  readManagedPreferences,
} from '../../src/config/managed-preferences.js';
import { tempDir } from '../helpers/tmp.js';

const REPO = resolve(import.meta.dirname, '../..');
const dir = tempDir('tg-mp-');
let n = 0;
function plistFile(body: string): string {
  const f = join(dir, `p${++n}.plist`);
  writeFileSync(
    f,
    `<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">${body}</plist>\n`,
  );
  return f;
}
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isGuardError(err)) return err.code;
    throw err;
  }
  throw new Error('did not throw');
}
/** python3's plistlib: the reference reader/writer. */
function plistlibToJson(file: string): unknown {
  return JSON.parse(
    execFileSync('python3', [
      '-c',
      'import json,plistlib,sys; print(json.dumps(plistlib.load(open(sys.argv[1],"rb")), default=str))',
      file,
    ]).toString(),
  );
}

describe('parseXmlPlist', () => {
  it('reads the shipped .mobileconfig exactly as python plistlib does', () => {
    const f = join(REPO, 'service/macos/toolguard.mobileconfig');
    expect(parseXmlPlist(readFileSync(f, 'utf8'))).toEqual(plistlibToJson(f));
  });

  it('reads the shipped launchd plist exactly as python plistlib does', () => {
    const f = join(REPO, 'service/macos/io.toolguard.guardd.plist');
    expect(parseXmlPlist(readFileSync(f, 'utf8'))).toEqual(plistlibToJson(f));
  });

  it('reads every value type, empty forms and entities; a plist written by plistlib round-trips', () => {
    const src = join(dir, 'types.json');
    const out = join(dir, 'types.plist');
    const value = {
      s: 'a & b <c> "d" é',
      empty: '',
      i: -42,
      r: 1.5,
      t: true,
      f: false,
      arr: ['x', 1, [], {}],
      nested: { k: { deeper: ['y'] } },
    };
    writeFileSync(src, JSON.stringify(value));
    execFileSync('python3', [
      '-c',
      'import json,plistlib,sys; plistlib.dump(json.load(open(sys.argv[1])), open(sys.argv[2],"wb"))',
      src,
      out,
    ]);
    expect(parseXmlPlist(readFileSync(out, 'utf8'))).toEqual(value);
    expect(
      parseXmlPlist(
        '<plist><dict><key>a</key><string/><key>b</key><array/><key>c</key><dict/></dict></plist>',
      ),
    ).toEqual({ a: '', b: [], c: {} });
  });
});

describe('readManagedPreferences', () => {
  it('returns dotted keys from nested and dotted entries and skips profile bookkeeping', () => {
    const f = plistFile(`<dict>
      <key>PayloadUUID</key><string>x</string><key>mcx_preference_settings</key><dict/>
      <key>collector</key><dict><key>url</key><string>https://c.example</string></dict>
      <key>policy.threshold</key><integer>2</integer>
      <key>sensors</key><dict><key>process</key><dict><key>enabled</key><false/></dict></dict>
      <key>policy</key><dict><key>trusted_keys</key><array><string>k1</string><string>k2</string></array></dict>
    </dict>`);
    expect(readManagedPreferences({ file: f, platform: 'linux' })).toEqual({
      'collector.url': 'https://c.example',
      'policy.threshold': 2,
      'sensors.process.enabled': false,
      'policy.trusted_keys': ['k1', 'k2'],
    });
  });

  it('a missing file means no managed preferences', () => {
    expect(readManagedPreferences({ file: join(dir, 'absent.plist'), platform: 'linux' })).toEqual({});
  });

  it.each([
    ['not a plist', '<html><body/></html>'],
    ['unterminated tag', '<plist><dict><key>a</key><string>x</string'],
    ['unknown element', '<plist><dict><key>a</key><foo>1</foo></dict></plist>'],
    ['dict entry without key', '<plist><dict><string>a</string></dict></plist>'],
    ['bad integer', '<plist><dict><key>a</key><integer>12abc</integer></dict></plist>'],
    ['bad real', '<plist><dict><key>a</key><real>nope</real></dict></plist>'],
    ['unknown entity', '<plist><dict><key>a</key><string>&bogus;</string></dict></plist>'],
    ['top level is an array', '<plist><array/></plist>'],
    ['two top-level values', '<plist><dict/><dict/></plist>'],
    ['truncated', '<plist><dict><key>a</key>'],
    ['unterminated comment', '<plist><!-- <dict/></plist>'],
    ['__proto__ key', '<plist><dict><key>__proto__</key><dict/></dict></plist>'],
    ['binary plist', 'bplist00\u0000\u0001garbage'],
    ['nested too deeply', `<plist>${'<array>'.repeat(100)}${'</array>'.repeat(100)}</plist>`],
  ])('refuses %s with GUARD_CONFIG_UNREADABLE', (_what, text) => {
    const f = join(dir, `bad${++n}.plist`);
    writeFileSync(f, text);
    expect(codeOf(() => readManagedPreferences({ file: f, platform: 'linux' }))).toBe(
      'GUARD_CONFIG_UNREADABLE',
    );
  });

  it('refuses a file over the size cap', () => {
    const f = plistFile(`<dict><key>a</key><string>${'x'.repeat(1024 * 1024 + 1)}</string></dict>`);
    expect(codeOf(() => readManagedPreferences({ file: f, platform: 'linux' }))).toBe(
      'GUARD_CONFIG_UNREADABLE',
    );
  });

  it('on macOS converts with plutil (injected here): its JSON becomes dotted keys; a failure is a config error', () => {
    const f = plistFile('<dict/>');
    const seen: string[] = [];
    const prefs = readManagedPreferences({
      file: f,
      platform: 'darwin',
      convert: (file) => {
        seen.push(file);
        return { collector: { url: 'https://mac.example' }, PayloadType: 'io.toolguard.guardd' };
      },
    });
    expect(seen).toEqual([f]);
    expect(prefs).toEqual({ 'collector.url': 'https://mac.example' });
    const failing = (): never => {
      throw new Error('plutil: Property List error');
    };
    expect(codeOf(() => readManagedPreferences({ file: f, platform: 'darwin', convert: failing }))).toBe(
      'GUARD_CONFIG_UNREADABLE',
    );
    expect(codeOf(() => readManagedPreferences({ file: f, platform: 'darwin', convert: () => [1] }))).toBe(
      'GUARD_CONFIG_UNREADABLE',
    );
  });

  it('the default file exists only on macOS', () => {
    expect(defaultManagedPreferencesFile('darwin')).toBe(
      '/Library/Managed Preferences/io.toolguard.guardd.plist',
    );
    expect(defaultManagedPreferencesFile('linux')).toBeNull();
    expect(defaultManagedPreferencesFile('win32')).toBeNull();
  });
});

describe('loadConfig with managed preferences', () => {
  const jsonFile = join(dir, 'config.json');
  writeFileSync(
    jsonFile,
    JSON.stringify({ collector: { url: 'https://file.example', timeout_ms: 1000 }, 'policy.threshold': 1 }),
  );

  it('precedence: defaults < JSON file < managed preferences < env < flags', () => {
    const mp = plistFile(`<dict>
      <key>collector</key><dict><key>url</key><string>https://mdm.example</string><key>timeout_ms</key><integer>2000</integer></dict>
      <key>policy</key><dict><key>threshold</key><integer>2</integer></dict>
    </dict>`);
    const onlyFile = loadConfig({ file: jsonFile, env: {}, managedPreferencesFile: null });
    expect(onlyFile['collector.url']).toBe('https://file.example');
    const withMp = loadConfig({ file: jsonFile, env: {}, managedPreferencesFile: mp });
    expect(withMp['collector.url']).toBe('https://mdm.example');
    expect(withMp['collector.timeout_ms']).toBe(2000);
    expect(withMp['policy.threshold']).toBe(2);
    expect(withMp['shipper.interval_ms']).toBe(5000); // untouched default
    const withEnv = loadConfig({
      file: jsonFile,
      env: { TOOLGUARD_COLLECTOR_URL: 'https://env.example' },
      managedPreferencesFile: mp,
    });
    expect(withEnv['collector.url']).toBe('https://env.example');
    expect(withEnv['collector.timeout_ms']).toBe(2000);
    const withFlags = loadConfig({
      file: jsonFile,
      env: { TOOLGUARD_COLLECTOR_URL: 'https://env.example' },
      managedPreferencesFile: mp,
      overrides: { 'collector.url': 'https://flag.example' },
    });
    expect(withFlags['collector.url']).toBe('https://flag.example');
  });

  it('an unknown key or a wrong type in managed preferences is refused with its code', () => {
    const unknown = plistFile(
      '<dict><key>collector</key><dict><key>ur1</key><string>x</string></dict></dict>',
    );
    expect(codeOf(() => loadConfig({ env: {}, managedPreferencesFile: unknown }))).toBe(
      'GUARD_CONFIG_UNKNOWN_KEY',
    );
    const wrongType = plistFile('<dict><key>policy.threshold</key><string>two</string></dict>');
    expect(codeOf(() => loadConfig({ env: {}, managedPreferencesFile: wrongType }))).toBe(
      'GUARD_CONFIG_INVALID_VALUE',
    );
  });

  it("the .mobileconfig's settings payload, filled in and delivered as managed preferences, is a valid config", () => {
    const out = join(dir, 'from-profile.plist');
    const script = `
import plistlib, sys
p = plistlib.load(open(sys.argv[1], 'rb'))
s = [c for c in p['PayloadContent'] if c['PayloadType'] == 'io.toolguard.guardd'][0]
s['collector']['url'] = 'https://collector.corp.example'
s['policy']['trusted_keys'] = ['MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=']
plistlib.dump(s, open(sys.argv[2], 'wb'))`;
    execFileSync('python3', ['-c', script, join(REPO, 'service/macos/toolguard.mobileconfig'), out]);
    const cfg = loadConfig({ env: {}, managedPreferencesFile: out });
    expect(cfg['collector.url']).toBe('https://collector.corp.example');
    expect(cfg['collector.enroll_secret_file']).toBe('/Library/Application Support/toolguard/enroll-secret');
    expect(cfg['policy.trusted_keys']).toHaveLength(1);
    expect(cfg['collector.enroll_secret']).toBe(''); // the profile carries only the reference
  });
});
