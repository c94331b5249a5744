// Synthetic large policies, shared by the benches (bench/*.bench.js) and the memory-budget test
// (test/daemon/guardd-memory.test.ts): N rules of the claude-code shape (names, exe globs, argv
// patterns, script packages, npm packages, path globs), each with distinct identifiers so nothing
// is deduplicated away. Plain JavaScript with no imports, so node runs it without a build and
// vitest imports it beside its types (synthetic-policy.d.ts). Not a bench itself: bench/run.js
// runs only *.bench.js.

/** One realistic rule: what a real ban-list entry carries, with identifiers made unique by `i`. */
export function syntheticRule(i) {
  return {
    id: `tool-${i}`,
    name: `Tool ${i}`,
    action: i % 3 === 0 ? 'warn' : 'block',
    message: `Tool ${i} is not approved on company machines.`,
    url: `https://intranet.example/approved-ai-tools#tool-${i}`,
    process: {
      names: [`tool${i}`, `tool${i}.exe`],
      exe_globs: [
        `**/node_modules/@vendor${i}/tool/**`,
        `**/node_modules/@vendor${i}/tool-{linux,darwin,win32}-*/**`,
        `**/.local/share/tool${i}/versions/**`,
      ],
      argv_patterns: [`^\\S*python[0-9.]* -m tool${i}(?: |$)`, `--tool${i}-(?:yolo|skip-permissions)\\b`],
      script_packages: [`@vendor${i}/tool`],
    },
    packages: [{ ecosystem: 'npm', name: `@vendor${i}/tool`, range: '*' }],
    paths: [`~/.local/share/tool${i}/versions/*`, `~/.vscode/extensions/vendor${i}.tool-*`],
  };
}

/** `n` synthetic rules. */
export function syntheticRules(n) {
  return Array.from({ length: n }, (_, i) => syntheticRule(i));
}

/**
 * A policy body valid from a minute ago for two weeks, with `rules` and no exceptions.
 * `now` is the caller's clock (ms), so a test under faketime signs a policy fresh for its own clock.
 */
export function syntheticPolicyBody(rules, { version = 1, now = Date.now() } = {}) {
  const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return {
    schema: 'toolguard.policy/v1',
    version,
    issued_at: iso(now - 60_000),
    expires_at: iso(now + 14 * 86_400_000),
    mode: 'enforce',
    rules,
    exceptions: [],
  };
}
