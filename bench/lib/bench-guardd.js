// Starting a real guardd for a bench (bench/guardd.bench.js, exec-events.bench.js,
// exec-deny.bench.js): a signed policy and a config in a scratch dir, guardd spawned from dist/
// through bin/guardd.js, and a wait until its status says it is ready. Plain JavaScript on dist/
// like the benches themselves; not a bench (bench/run.js runs only *.bench.js).
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { callDaemon } from '../../dist/control/control-client.js';
import { signEnvelope } from '../../dist/policy/dsse.js';
import { parsePrivateKey } from '../../dist/policy/keys.js';
import { POLICY_PAYLOAD_TYPE } from '../../dist/policy/policy-types.js';

/**
 * Writes `body` signed with `key` and a guardd config in `sub` (state, socket and policy there; the
 * install sensor and desktop notifications off; `extra` on top). Returns the paths.
 */
export function writeGuarddFiles(sub, body, key, extra = {}) {
  const policyFile = join(sub, 'policy.dsse.json');
  writeFileSync(
    policyFile,
    JSON.stringify(
      signEnvelope(JSON.stringify(body), POLICY_PAYLOAD_TYPE, [parsePrivateKey(key.privateKeyPem)]),
    ),
  );
  const socketDir = join(sub, 'run');
  const configFile = join(sub, 'config.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      'paths.state_dir': join(sub, 'state'),
      'paths.socket_dir': socketDir,
      'paths.bootstrap_policy': policyFile,
      'policy.trusted_keys': [key.publicKeyPem],
      'sensors.install.enabled': false,
      'enforcement.notify_desktop': false,
      'log.level': 'warn',
      ...extra,
    }),
  );
  return { policyFile, socketDir, configFile };
}

/** Spawns guardd (node `nodeArgs` first, e.g. the unit's heap cap) on `configFile`. */
export function spawnGuardd(configFile, nodeArgs = []) {
  return spawn(
    process.execPath,
    [...nodeArgs, new URL('../../bin/guardd.js', import.meta.url).pathname, '--config', configFile],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
}

/**
 * Polls guardd's status until `ready(status)`; returns that status. Throws when guardd exits or
 * `timeoutMs` passes.
 */
export async function waitForStatus(guardd, socketDir, ready, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const s = await callDaemon(join(socketDir, 'guardd.sock'), 'status', {}, 2000);
      if (ready(s)) return s;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    if (guardd.exitCode !== null) throw new Error(`guardd exited ${guardd.exitCode}`);
    if (Date.now() > deadline) throw new Error('guardd was not ready in time');
    await sleep(100);
  }
}
