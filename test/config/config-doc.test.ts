import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderConfigDoc, settingRows } from '../../src/config/config-doc.js';
import { SETTINGS } from '../../src/config/settings.js';
import { runGuardctl } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';

describe('config reference', () => {
  it('docs/config.md is generated from the settings table and up to date (npm run docs)', () => {
    expect(readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8')).toBe(renderConfigDoc());
    expect(settingRows().map((r) => r.key)).toEqual(Object.keys(SETTINGS));
  });

  it('guardctl config shows effective values, hides secrets, and refuses a bad file like guardd', () => {
    const dir = tempDir();
    const good = join(dir, 'good.json');
    writeFileSync(
      good,
      JSON.stringify({ collector: { url: 'https://c.example', enroll_secret: 'hunter2' } }),
    );
    const r = runGuardctl(['--config', good, '--json', 'config']);
    expect(r.code).toBe(0);
    const settings = r.json<{ settings: { key: string; value: unknown }[] }>().settings;
    expect(settings.find((s) => s.key === 'collector.url')?.value).toBe('https://c.example');
    expect(settings.find((s) => s.key === 'collector.enroll_secret')?.value).toBe('(set)');
    expect(r.stdout).not.toContain('hunter2');

    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ collector: { uri: 'x' } }));
    const rb = runGuardctl(['--config', bad, 'config']);
    expect(rb.code).toBe(6);
    expect(rb.stderr).toMatch(/GUARD_CONFIG_UNKNOWN_KEY/);
  });
});
