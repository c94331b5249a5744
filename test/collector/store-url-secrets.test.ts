/**
 * A PostgreSQL password never reaches config, logs or errors through the store URL's query
 * (reviewer): pg reads `?password=` and `?sslpassword=` as well as the userinfo, and checkStoreUrl
 * refused only the userinfo, so `postgres://tg@db/tg?password=…` was accepted and printed in full
 * in the startup log line (`db`) and in GUARD_STORE_UNAVAILABLE's message and details.
 */
import { describe, expect, it } from 'vitest';
import { loadCollectorConfig, parseCollectorArgs } from '../../src/collector/collector-config.js';
import { openStore } from '../../src/collector/store/open-store.js';
import { redactUrl } from '../../src/collector/store/postgres-store.js';
import type { GuardError } from '../../src/common/errors.js';

const SECRET = 'hunter2-secret-pw';

function configError(url: string): GuardError | null {
  try {
    loadCollectorConfig(parseCollectorArgs(['--store-url', url]), {
      TOOLGUARD_COLLECTOR_ENROLL_SECRET: 'e'.repeat(20),
      TOOLGUARD_COLLECTOR_ADMIN_TOKEN: 'a'.repeat(20),
    });
    return null;
  } catch (e) {
    return e as GuardError;
  }
}

describe('store_url secrets', () => {
  it.each([
    ['password', `postgres://tg@127.0.0.1:5432/tg?password=${SECRET}`],
    ['sslpassword', `postgres://tg@127.0.0.1:5432/tg?sslmode=require&sslpassword=${SECRET}`],
  ])('a URL with ?%s= is refused without echoing it', (_k, url) => {
    const err = configError(url);
    expect(err?.code).toBe('GUARD_CONFIG_INVALID_VALUE');
    expect(err?.message).not.toContain(SECRET);
    expect(JSON.stringify(err)).not.toContain(SECRET);
  });

  it('a URL without secrets is still accepted', () => {
    expect(configError('postgres://tg@127.0.0.1:5432/tg?sslmode=require')).toBeNull();
  });

  it('redactUrl hides a query password; openStore refuses such a URL without printing it', async () => {
    expect(redactUrl(`postgres://tg@h/db?password=${SECRET}&sslpassword=${SECRET}`)).not.toContain(SECRET);
    // given straight to openStore (not through the config): refused before connecting
    const err = await openStore({ dbFile: '', url: `postgres://tg@127.0.0.1:1/tg?password=${SECRET}` }).then(
      async (s) => {
        await s.close();
        return null;
      },
      (e: unknown) => e as GuardError,
    );
    expect(err?.code).toBe('GUARD_CONFIG_INVALID_VALUE');
    expect(err?.message).not.toContain(SECRET);
    expect(JSON.stringify((err as unknown as { details?: unknown }).details ?? {})).not.toContain(SECRET);
  });
});
