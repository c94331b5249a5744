/**
 * The device identity file: root-only mode, atomic whole-file writes that read back, and a
 * damaged file read as empty (the caller then falls back to the DB's copy or a new id).
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { DeviceIdentity, IDENTITY_FILE } from '../../src/store/device-identity.js';
import { tempDir } from '../helpers/tmp.js';

describe('DeviceIdentity', () => {
  test('writes 0600, reads back after reopening, leaves no temp file', () => {
    const dir = tempDir('tgtr-idf-');
    const a = DeviceIdentity.open(dir);
    expect(a.get('device_id')).toBeUndefined();
    a.set('device_id', 'dev-1');
    a.set('collector.device_token', 'tok');
    expect(statSync(join(dir, IDENTITY_FILE)).mode & 0o777).toBe(0o600);
    const b = DeviceIdentity.open(dir);
    expect(b.get('device_id')).toBe('dev-1');
    expect(b.get('collector.device_token')).toBe('tok');
    b.set('collector.device_token', null);
    expect(DeviceIdentity.open(dir).get('collector.device_token')).toBeNull();
    expect(readdirSync(dir)).toEqual([IDENTITY_FILE]);
  });

  test.each([
    ['not JSON', 'garbage{'],
    ['an array', '["dev"]'],
    ['oversized', `{"device_id":"${'x'.repeat(20_000)}"}`],
  ])('a damaged file (%s) reads as empty', (_name, text) => {
    const dir = tempDir('tgtr-idf-');
    writeFileSync(join(dir, IDENTITY_FILE), text);
    const id = DeviceIdentity.open(dir);
    expect(id.get('device_id')).toBeUndefined();
    id.set('device_id', 'dev-2');
    expect(JSON.parse(readFileSync(join(dir, IDENTITY_FILE), 'utf8'))).toEqual({ device_id: 'dev-2' });
  });
});
