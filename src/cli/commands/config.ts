/**
 * `guardctl config`: the effective configuration this machine's guardd reads (file + environment),
 * validated exactly as guardd validates it, with every key's description. Secrets show only
 * whether they are set. Runs without the daemon.
 */

import { settingRows } from '../../config/config-doc.js';
import { loadConfig } from '../../config/load-config.js';
import { SETTINGS, type SettingDef } from '../../config/settings.js';
import type { GuardctlCommand } from '../command.js';

export const configCommand: GuardctlCommand = {
  name: 'config',
  summary: 'Show the effective configuration (validated like guardd does), with each key explained',
  examples: [
    'guardctl config',
    'guardctl --config /etc/toolguard/config.json config',
    'guardctl --json config',
  ],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const config = loadConfig({ file: ctx.configFile, required: false });
    const rows = settingRows().map((r) => {
      const def = SETTINGS[r.key as keyof typeof SETTINGS] as SettingDef<unknown>;
      const value = (config as Record<string, unknown>)[r.key];
      const shown = def.secret ? (value ? '(set)' : '(not set)') : value;
      return { key: r.key, value: shown, env: r.env, description: r.description };
    });
    const width = Math.max(...rows.map((r) => r.key.length));
    const text = [
      `config file: ${ctx.configFile}`,
      ...rows.map((r) => `${r.key.padEnd(width)}  ${JSON.stringify(r.value)}`),
    ].join('\n');
    return { data: { config_file: ctx.configFile, settings: rows }, text };
  },
};
