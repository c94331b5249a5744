/**
 * Owns guardctl's generated reference: the man page (roff, section 1) and the bash, zsh and fish
 * completions, all built from the command definitions (command-list.ts) and the global options,
 * so they cannot drift from what guardctl parses. scripts/gen-cli-reference.js writes them under
 * docs/ (which the packages ship); its `--check` mode is run by the tests. Pure: text in, text out.
 */
import { AGENT_VERSION } from '../common/version.js';
import type { CommandOption, GuardctlCommand } from './command.js';
import { COMMANDS } from './command-list.js';
import { EXIT } from './error-message.js';

/** guardctl's own options (before the command), as guardctl-main.ts declares them. */
export const GLOBAL_OPTIONS: readonly CommandOption[] = [
  { flags: '--json', description: 'print JSON for machines' },
  { flags: '--config <file>', description: 'config file to read the socket location from' },
  { flags: '--socket-dir <dir>', description: 'directory of guardd.sock / admin.sock' },
  { flags: '-V, --version', description: 'print the version' },
  { flags: '-h, --help', description: 'print help' },
];

const EXIT_MEANINGS: Record<keyof typeof EXIT, string> = {
  OK: 'ok',
  UNEXPECTED: 'unexpected error',
  USAGE: 'usage error (unknown command or option, bad arguments)',
  DAEMON_NOT_RUNNING: 'guardd is not running or did not answer',
  FORBIDDEN: 'needs root, permission denied on a socket, or --force needed',
  POLICY: 'policy rejected or invalid',
  CONFIG: 'config invalid',
  NOT_FOUND: 'not found',
  CHECK_FAILED: 'a check failed (doctor, policy verify, policy lint)',
  PACKAGE_INPUT: 'package: bad collector URL, unreadable enroll secret or bad trusted key',
  PACKAGE_BUILD: 'package: the package build failed',
};

/** The long and short names of an option ('--socket-dir', '-V'), without its value syntax. */
function optionNames(o: CommandOption): string[] {
  return o.flags
    .split(/[ ,|]+/)
    .filter((w) => w.startsWith('-'))
    .map((w) => w.trim());
}

function takesValue(o: CommandOption): boolean {
  return /<[^>]+>|\[[^\]]+\]/.test(o.flags);
}

/** Group words ('policy', 'quarantine') and top-level command words, sorted. */
function topWords(commands: readonly GuardctlCommand[]): string[] {
  return [...new Set(commands.map((c) => c.name.split(' ')[0] as string))].sort();
}

function roff(s: string): string {
  return s
    .replace(/\\/g, '\\e')
    .replace(/^([.'])/gm, '\\&$1')
    .replace(/-/g, '\\-');
}

/** The man page guardctl(1). */
export function manPage(commands: readonly GuardctlCommand[] = COMMANDS): string {
  const out: string[] = [
    `.TH GUARDCTL 1 "" "toolguard ${AGENT_VERSION}" "User Commands"`,
    '.SH NAME',
    'guardctl \\- see and steer toolguard on this machine',
    '.SH SYNOPSIS',
    '.B guardctl',
    '[\\fIglobal options\\fR] \\fIcommand\\fR [\\fIoptions\\fR] [\\fIarguments\\fR]',
    '.SH DESCRIPTION',
    roff(
      'guardctl talks to the local guardd over its control sockets: the public socket answers read-only questions for anyone; commands marked (root) use the admin socket, which only root can open. Every command accepts --json; without it the output is for people (colour only on a terminal, never with NO_COLOR).',
    ),
    '.SH GLOBAL OPTIONS',
  ];
  for (const o of GLOBAL_OPTIONS) out.push('.TP', `.B ${roff(o.flags)}`, roff(o.description));
  out.push('.SH COMMANDS');
  for (const c of commands) {
    const args = (c.args ?? []).map((a) => a.syntax).join(' ');
    out.push('.TP', `.B guardctl ${roff(c.name)}${args ? ` \\fI${roff(args)}\\fR` : ''}`);
    out.push(roff(`${c.summary}${c.needsRoot ? ' (root)' : ''}.`));
    for (const o of c.options ?? [])
      out.push('.RS', '.TP', `.B ${roff(o.flags)}`, roff(o.description), '.RE');
    for (const e of c.examples ?? []) out.push('.RS', '.PP', `\\fB$\\fR ${roff(e)}`, '.RE');
  }
  out.push('.SH EXIT STATUS', '.TS', 'l l.');
  for (const [key, code] of Object.entries(EXIT))
    out.push(`${code}\t${roff(EXIT_MEANINGS[key as keyof typeof EXIT])}`);
  out.push('.TE');
  out.push(
    '.SH ENVIRONMENT',
    '.TP',
    '.B NO_COLOR',
    'when set and not empty, no colour.',
    '.TP',
    '.B TOOLGUARD_PATHS_SOCKET_DIR',
    roff('where guardd.sock and admin.sock are (like --socket-dir).'),
    '.SH FILES',
    '.TP',
    '.I /etc/toolguard/config.json',
    'the configuration guardd and guardctl read.',
    '.TP',
    '.I /run/toolguard/guardd.sock, /run/toolguard/admin.sock',
    'the public and the root-only control sockets.',
    '.SH SEE ALSO',
    'guardd(8); docs/guardctl.md, docs/policy.md in the toolguard package.',
  );
  return `${out.join('\n')}\n`;
}

/** bash completion: `complete -F _guardctl guardctl`. */
export function bashCompletion(commands: readonly GuardctlCommand[] = COMMANDS): string {
  const globals = GLOBAL_OPTIONS.flatMap(optionNames).join(' ');
  const globalsWithValue = GLOBAL_OPTIONS.filter(takesValue).flatMap(optionNames).join('|');
  const cases: string[] = [];
  for (const word of topWords(commands)) {
    const subs = commands.filter((c) => c.name.startsWith(`${word} `)).map((c) => c.name.split(' ')[1]);
    if (subs.length > 0) cases.push(`      ${word}) words="${subs.join(' ')}" ;;`);
  }
  const optCases = commands.map((c) => {
    const opts = [...(c.options ?? []).flatMap(optionNames), '--help'].join(' ');
    return `      "${c.name}") words="${opts}" ;;`;
  });
  return `# bash completion for guardctl — generated from the command definitions (npm run docs)
_guardctl() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  local i w cmd=() words=""
  case "$prev" in
    ${globalsWithValue || '--none'}|--policy|--key|--out|--previous) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in
      ${globalsWithValue || '--none'}) ((i++)) ;;
      -*) ;;
      *) cmd+=("$w") ;;
    esac
  done
  if [[ "$cur" == -* ]]; then
    case "\${cmd[*]}" in
${optCases.join('\n')}
      *) words="${globals}" ;;
    esac
  elif [ \${#cmd[@]} -eq 0 ]; then
    words="${topWords(commands).join(' ')} help"
  elif [ \${#cmd[@]} -eq 1 ]; then
    case "\${cmd[0]}" in
${cases.join('\n')}
      *) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
  else
    COMPREPLY=($(compgen -f -- "$cur")); return
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _guardctl guardctl
`;
}

function zshQuote(s: string): string {
  return s.replace(/'/g, "'\\''").replace(/\[/g, '\\[').replace(/\]/g, '\\]').replace(/:/g, '\\:');
}

/** zsh completion (#compdef guardctl). */
export function zshCompletion(commands: readonly GuardctlCommand[] = COMMANDS): string {
  const spec = (o: CommandOption): string => {
    const names = optionNames(o);
    const value = takesValue(o) ? ':value:_files' : '';
    const head = names.length > 1 ? `{${names.join(',')}}` : (names[0] as string);
    return `'${head}[${zshQuote(o.description)}]${value}'`.replace(/^'\{/, '{').replace(/\}\[/, "}'[");
  };
  const lines = [
    '#compdef guardctl',
    '# zsh completion for guardctl — generated from the command definitions (npm run docs)',
    '_guardctl() {',
    '  local -a commands',
    '  commands=(',
    ...topWords(commands).map((w) => {
      const c = commands.find((x) => x.name === w);
      return `    '${w}:${zshQuote(c ? c.summary : `${w} commands`)}'`;
    }),
    '  )',
    '  local -a subs',
    '  case $words[2] in',
  ];
  for (const word of topWords(commands)) {
    const subs = commands.filter((c) => c.name.startsWith(`${word} `));
    if (subs.length === 0) continue;
    lines.push(
      `    ${word}) subs=(${subs.map((c) => `'${c.name.split(' ')[1]}:${zshQuote(c.summary)}'`).join(' ')}) ;;`,
    );
  }
  lines.push('  esac');
  lines.push(
    // biome-ignore lint/suspicious/noTemplateCurlyInString: zsh parameter expansion, not a template
    '  local cmd="${words[2]}"; (( CURRENT > 3 )) && (( ${#subs} > 0 )) && cmd="${words[2]} ${words[3]}"',
  );
  lines.push('  local -a opts');
  lines.push('  case $cmd in');
  for (const c of commands) {
    lines.push(`    '${c.name}') opts=(${(c.options ?? []).map(spec).join(' ')}) ;;`);
  }
  lines.push('  esac');
  lines.push('  if (( CURRENT == 2 )); then _describe command commands');
  // biome-ignore lint/suspicious/noTemplateCurlyInString: zsh parameter expansion, not a template
  lines.push('  elif (( CURRENT == 3 && ${#subs} > 0 )); then _describe subcommand subs');
  lines.push('  else _arguments -s $opts "*:file:_files"; fi');
  lines.push('}');
  lines.push('_guardctl "$@"');
  return `${lines.join('\n')}\n`;
}

function fishQuote(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** fish completion. */
export function fishCompletion(commands: readonly GuardctlCommand[] = COMMANDS): string {
  const lines = [
    '# fish completion for guardctl — generated from the command definitions (npm run docs)',
    'complete -c guardctl -f',
  ];
  for (const o of GLOBAL_OPTIONS) {
    const [long, short] = [
      optionNames(o).find((n) => n.startsWith('--')),
      optionNames(o).find((n) => /^-[^-]/.test(n)),
    ];
    lines.push(
      `complete -c guardctl${long ? ` -l ${long.slice(2)}` : ''}${short ? ` -s ${short.slice(1)}` : ''}${takesValue(o) ? ' -r -F' : ''} -d ${fishQuote(o.description)}`,
    );
  }
  const tops = topWords(commands);
  for (const w of tops) {
    const c = commands.find((x) => x.name === w);
    lines.push(
      `complete -c guardctl -n "not __fish_seen_subcommand_from ${tops.join(' ')}" -a ${w} -d ${fishQuote(c ? c.summary : `${w} commands`)}`,
    );
  }
  for (const c of commands) {
    const [group, sub] = c.name.split(' ');
    if (sub) {
      const siblings = commands
        .filter((x) => x.name.startsWith(`${group} `))
        .map((x) => x.name.split(' ')[1]);
      lines.push(
        `complete -c guardctl -n "__fish_seen_subcommand_from ${group}; and not __fish_seen_subcommand_from ${siblings.join(' ')}" -a ${sub} -d ${fishQuote(c.summary)}`,
      );
    }
    const cond = sub
      ? `__fish_seen_subcommand_from ${group}; and __fish_seen_subcommand_from ${sub}`
      : `__fish_seen_subcommand_from ${group}`;
    for (const o of c.options ?? []) {
      const long = optionNames(o).find((n) => n.startsWith('--'));
      const short = optionNames(o).find((n) => /^-[^-]/.test(n));
      lines.push(
        `complete -c guardctl -n "${cond}"${long ? ` -l ${long.slice(2)}` : ''}${short ? ` -s ${short.slice(1)}` : ''}${takesValue(o) ? ' -r -F' : ''} -d ${fishQuote(o.description)}`,
      );
    }
    if ((c.args ?? []).length > 0) lines.push(`complete -c guardctl -n "${cond}" -F`);
  }
  return `${lines.join('\n')}\n`;
}

/** Every generated file, by its path under the repository. */
export function cliReferenceFiles(): readonly (readonly [string, string])[] {
  return [
    ['docs/man/guardctl.1', manPage()],
    ['docs/completions/guardctl.bash', bashCompletion()],
    ['docs/completions/_guardctl', zshCompletion()],
    ['docs/completions/guardctl.fish', fishCompletion()],
  ];
}
