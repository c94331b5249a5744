/**
 * Owns rendering the settings table for people: docs/config.md and `guardctl config` are both
 * generated from `SETTINGS`, so the reference cannot drift from what the loader accepts.
 */
import { envVarOf, SETTINGS, type SettingDef } from './settings.js';

export interface SettingRow {
  readonly key: string;
  readonly type: string;
  readonly default: string;
  readonly env: string;
  readonly description: string;
}

/** One row per setting, in table order. Platform-dependent defaults are shown as `(per OS)`. */
export function settingRows(): SettingRow[] {
  return Object.entries(SETTINGS).map(([key, raw]) => {
    const def = raw as SettingDef<unknown>;
    const type =
      def.kind === 'enum'
        ? (def.values ?? []).join(' \\| ')
        : def.kind === 'integer' && (def.min !== undefined || def.max !== undefined)
          ? `integer ${def.min ?? ''}–${def.max ?? ''}`
          : def.kind;
    const dflt = typeof def.default === 'function' ? '(per OS, see paths)' : JSON.stringify(def.default);
    return { key, type, default: dflt, env: envVarOf(key), description: def.description };
  });
}

/** The whole docs/config.md. */
export function renderConfigDoc(): string {
  const rows = settingRows()
    .map(
      (r) =>
        `| \`${r.key}\` | ${r.type} | \`${r.default}\` | \`${r.env}\` | ${r.description.replace(/\|/g, '\\|').replace(/</g, '&lt;')} |`,
    )
    .join('\n');
  return `# Configuration reference

<!-- Generated from src/config/settings.ts by \`npm run docs\`; do not edit by hand. -->

guardd reads, in this order (later wins): the defaults below, the JSON config file
(\`/etc/toolguard/config.json\`, \`/Library/Application Support/toolguard/config.json\`,
\`%ProgramData%\\toolguard\\config.json\`, or \`--config FILE\`), then \`TOOLGUARD_*\` environment variables.
On macOS, managed preferences delivered by a configuration profile are read as well (see
[install.md](install.md)).

The file may nest keys by their dots (\`{"collector": {"url": "https://…"}}\`) or use the dotted key
itself (\`{"collector.url": "https://…"}\`). An unknown key or a bad value stops guardd at start with
the key, the value and what was expected (exit code 6); nothing is guessed.

Environment variables: \`TOOLGUARD_\` + the key upper-cased with dots as underscores. Lists are
comma-separated or a JSON array.

| key | type | default | environment | description |
|---|---|---|---|---|
${rows}

Default paths per OS:

| | Linux | macOS | Windows |
|---|---|---|---|
| \`paths.state_dir\` | \`/var/lib/toolguard\` | \`/Library/Application Support/toolguard\` | \`%ProgramData%\\toolguard\` |
| \`paths.socket_dir\` | \`/run/toolguard\` | \`/var/run/toolguard\` | named pipes \`\\\\.\\pipe\\toolguard\`, \`\\\\.\\pipe\\toolguard-admin\` |
`;
}
