/**
 * Owns the generated reference of the three programs: guardctl(1), guardd(8) and
 * guard-collector(8) man pages (roff) and their bash, zsh and fish completions, all built from
 * the command definitions (command-list.ts) and the program specs (program.ts) the programs parse
 * with, so they cannot drift. scripts/gen-cli-reference.js writes them under
 * docs/ (which the packages ship); its `--check` mode is run by the tests. Pure: text in, text out.
 */
import { COLLECTOR_PROGRAM } from '../collector/collector-config.js';
import { AGENT_VERSION } from '../common/version.js';
import { GUARDD_PROGRAM } from '../daemon/guardd-program.js';
import type { CommandOption, GuardctlCommand } from './command.js';
import { COMMANDS } from './command-list.js';
import { EXIT, EXIT_MEANINGS } from './error-message.js';
import { GUARDCTL_PROGRAM } from './guardctl-main.js';
import { type ProgramSpec, standardOptions } from './program.js';

/** A program's options as its man page and completions list them (hidden ones left out). */
function listedOptions(spec: ProgramSpec): readonly CommandOption[] {
  return [...spec.options.filter((o) => !o.hidden), ...standardOptions(spec.name)];
}

/** guardctl's own options (before the command). */
export const GLOBAL_OPTIONS: readonly CommandOption[] = listedOptions(GUARDCTL_PROGRAM);

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
    .replace(/-/g, '\\-')
    .replace(
      /[^\p{ASCII}]/gu,
      (c) => `\\[u${(c.codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0')}]`,
    );
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
    roff(GUARDCTL_PROGRAM.description),
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
  out.push(...exitStatus(GUARDCTL_PROGRAM));
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
    roff(SEE_ALSO.guardctl),
  );
  return `${out.join('\n')}\n`;
}

/** The EXIT STATUS section: the codes `spec` ends with, meanings from the one table. */
function exitStatus(spec: ProgramSpec): string[] {
  return [
    '.SH EXIT STATUS',
    ...spec.exitCodes.flatMap((c) => ['.TP', `.B ${EXIT[c]}`, roff(EXIT_MEANINGS[c])]),
  ];
}

/** The man page of a program without subcommands (guardd(8), guard-collector(8)). */
export function programManPage(spec: ProgramSpec, seeAlso: string): string {
  const out: string[] = [
    `.TH ${spec.name.toUpperCase().replace(/-/g, '\\-')} ${spec.section} "" "toolguard ${AGENT_VERSION}" "System Administration"`,
    '.SH NAME',
    `${roff(spec.name)} \\- ${roff(spec.summary.replace(/^The /, 'the '))}`,
    '.SH SYNOPSIS',
    `.B ${roff(spec.name)}`,
    '[\\fIoptions\\fR]',
    '.SH DESCRIPTION',
    roff(spec.description),
    '.SH OPTIONS',
  ];
  for (const o of listedOptions(spec)) out.push('.TP', `.B ${roff(o.flags)}`, roff(o.description));
  out.push('.SH EXAMPLES');
  for (const e of spec.examples) out.push('.PP', `\\fB$\\fR ${roff(e)}`);
  out.push(...exitStatus(spec));
  out.push('.SH SEE ALSO', roff(seeAlso));
  return `${out.join('\n')}\n`;
}

/** bash completion of a program without subcommands: its options, files after those taking a value. */
export function programBashCompletion(spec: ProgramSpec): string {
  const options = listedOptions(spec);
  const fn = `_${spec.name.replace(/-/g, '_')}`;
  const withValue = options.filter(takesValue).flatMap(optionNames).join('|');
  return `# bash completion for ${spec.name} — generated from its option definitions (npm run docs)
${fn}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  case "$prev" in
    ${withValue || '--none'}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  COMPREPLY=($(compgen -W "${options.flatMap(optionNames).join(' ')}" -- "$cur"))
}
complete -F ${fn} ${spec.name}
`;
}

/** zsh completion of a program without subcommands. */
export function programZshCompletion(spec: ProgramSpec): string {
  const fn = `_${spec.name.replace(/-/g, '_')}`;
  return [
    `#compdef ${spec.name}`,
    `# zsh completion for ${spec.name} — generated from its option definitions (npm run docs)`,
    `${fn}() {`,
    `  _arguments -s ${listedOptions(spec).map(zshSpec).join(' \\\n    ')}`,
    '}',
    `${fn} "$@"`,
    '',
  ].join('\n');
}

/** fish completion of a program without subcommands. */
export function programFishCompletion(spec: ProgramSpec): string {
  const lines = [
    `# fish completion for ${spec.name} — generated from its option definitions (npm run docs)`,
    `complete -c ${spec.name} -f`,
    ...listedOptions(spec).map((o) => fishLine(spec.name, '', o)),
  ];
  return `${lines.join('\n')}\n`;
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

/** An option as a zsh `_arguments` spec. */
function zshSpec(o: CommandOption): string {
  const names = optionNames(o);
  const value = takesValue(o) ? ':value:_files' : '';
  const head = names.length > 1 ? `{${names.join(',')}}` : (names[0] as string);
  return `'${head}[${zshQuote(o.description)}]${value}'`.replace(/^'\{/, '{').replace(/\}\[/, "}'[");
}

/** zsh completion (#compdef guardctl). */
export function zshCompletion(commands: readonly GuardctlCommand[] = COMMANDS): string {
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
    lines.push(`    '${c.name}') opts=(${(c.options ?? []).map(zshSpec).join(' ')}) ;;`);
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

/** A fish `complete` line for option `o` of `program`, under condition `cond` (none when empty). */
function fishLine(program: string, cond: string, o: CommandOption): string {
  const long = optionNames(o).find((n) => n.startsWith('--'));
  const short = optionNames(o).find((n) => /^-[^-]/.test(n));
  return `complete -c ${program}${cond ? ` -n "${cond}"` : ''}${long ? ` -l ${long.slice(2)}` : ''}${short ? ` -s ${short.slice(1)}` : ''}${takesValue(o) ? ' -r -F' : ''} -d ${fishQuote(o.description)}`;
}

/** fish completion. */
export function fishCompletion(commands: readonly GuardctlCommand[] = COMMANDS): string {
  const lines = [
    '# fish completion for guardctl — generated from the command definitions (npm run docs)',
    'complete -c guardctl -f',
  ];
  for (const o of GLOBAL_OPTIONS) lines.push(fishLine('guardctl', '', o));
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
    for (const o of c.options ?? []) lines.push(fishLine('guardctl', cond, o));
    if ((c.args ?? []).length > 0) lines.push(`complete -c guardctl -n "${cond}" -F`);
  }
  return `${lines.join('\n')}\n`;
}

const SEE_ALSO: Record<ProgramSpec['name'], string> = {
  guardctl: 'guardd(8), guard-collector(8); docs/guardctl.md, docs/policy.md in the toolguard package.',
  guardd: 'guardctl(1), guard-collector(8); docs/config.md, docs/install.md in the toolguard package.',
  'guard-collector': 'guardd(8), guardctl(1); docs/collector.md in the toolguard package.',
};

/** Every generated file, by its path under the repository. */
export function cliReferenceFiles(): readonly (readonly [string, string])[] {
  return [
    ['docs/man/guardctl.1', manPage()],
    ['docs/completions/guardctl.bash', bashCompletion()],
    ['docs/completions/_guardctl', zshCompletion()],
    ['docs/completions/guardctl.fish', fishCompletion()],
    ...([GUARDD_PROGRAM, COLLECTOR_PROGRAM] as const).flatMap((spec) => [
      [`docs/man/${spec.name}.${spec.section}`, programManPage(spec, SEE_ALSO[spec.name])] as const,
      [`docs/completions/${spec.name}.bash`, programBashCompletion(spec)] as const,
      [`docs/completions/_${spec.name}`, programZshCompletion(spec)] as const,
      [`docs/completions/${spec.name}.fish`, programFishCompletion(spec)] as const,
    ]),
  ];
}
