/**
 * The man pages and the bash/zsh/fish completions of guardctl, guardd and guard-collector are
 * generated from the command and program definitions and committed under docs/ (the packages
 * install them): they are current, the man pages render without a groff warning, and the bash
 * completions complete commands, subcommands and options in a real bash.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/cli/command-list.js';
import { COLLECTOR_PROGRAM } from '../../src/collector/collector-config.js';
import { GUARDD_PROGRAM } from '../../src/daemon/guardd-program.js';
import { ROOT } from '../helpers/daemon.js';

const file = (p: string): string => join(ROOT, p);

describe('generated CLI reference', () => {
  it('the committed man page and completions are what the command definitions generate', () => {
    const r = spawnSync(process.execPath, [file('scripts/gen-cli-reference.js'), '--check'], {
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('the man pages name every command and option and render without warnings', () => {
    const page = readFileSync(file('docs/man/guardctl.1'), 'utf8');
    for (const c of COMMANDS) expect(page).toContain(`.B guardctl ${c.name.replace(/-/g, '\\-')}`);
    const roff = (s: string): string => s.replace(/-/g, '\\-');
    for (const spec of [GUARDD_PROGRAM, COLLECTOR_PROGRAM]) {
      const p = readFileSync(file(`docs/man/${spec.name}.${spec.section}`), 'utf8');
      for (const o of spec.options) {
        if (o.hidden) expect(p).not.toContain(`.B ${roff(o.flags)}`);
        else expect(p).toContain(`.B ${roff(o.flags)}`);
      }
      for (const e of spec.examples) expect(p).toContain(roff(e));
    }
    for (const f of ['guardctl.1', 'guardd.8', 'guard-collector.8']) {
      const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', file(`docs/man/${f}`)], {
        encoding: 'utf8',
      });
      expect(r.status).toBe(0);
      expect(r.stderr, f).toBe('');
    }
  });

  it('bash completes guardd and guard-collector options, and files after one that takes a value', () => {
    const complete = (program: string, line: string): string => {
      const fn = `_${program.replace(/-/g, '_')}`;
      const script = `source '${file(`docs/completions/${program}.bash`)}'
read -ra COMP_WORDS <<< "$LINE"; [[ "$LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); ${fn}; echo "\${COMPREPLY[*]}"`;
      return spawnSync('bash', ['-c', script], {
        encoding: 'utf8',
        cwd: ROOT,
        env: { ...process.env, LINE: line },
      }).stdout.trim();
    };
    expect(complete('guardd', 'guardd --e')).toBe('--enforce');
    expect(complete('guard-collector', 'guard-collector --tls-k')).toBe('--tls-key');
    // a secret is never offered as a flag
    expect(complete('guard-collector', 'guard-collector --admin-tok')).toBe('--admin-token-file');
    expect(complete('guard-collector', 'guard-collector --config packag').split(' ').sort()).toEqual(
      ['package-lock.json', 'package.json'].sort(),
    );
  });

  it('bash completes commands, subcommands and each command’s options', () => {
    const complete = (line: string): string => {
      const script = `source '${file('docs/completions/guardctl.bash')}'
read -ra COMP_WORDS <<< "$LINE"; [[ "$LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); _guardctl; echo "\${COMPREPLY[*]}"`;
      return spawnSync('bash', ['-c', script], {
        encoding: 'utf8',
        env: { ...process.env, LINE: line },
      }).stdout.trim();
    };
    expect(complete('guardctl ').split(' ')).toEqual(
      expect.arrayContaining(['status', 'events', 'policy', 'quarantine', 'doctor']),
    );
    expect(complete('guardctl policy t')).toBe('test');
    expect(complete('guardctl policy test --')).toBe('--policy --kind --user --help');
    expect(complete('guardctl --socket-dir /tmp status --v')).toBe('--verbose');
    expect(complete('guardctl quarantine restore --')).toBe('--force --help');
  });

  it('zsh and fish files cover every command and every program option', () => {
    for (const spec of [GUARDD_PROGRAM, COLLECTOR_PROGRAM]) {
      const zsh = readFileSync(file(`docs/completions/_${spec.name}`), 'utf8');
      const fish = readFileSync(file(`docs/completions/${spec.name}.fish`), 'utf8');
      expect(zsh.startsWith(`#compdef ${spec.name}`)).toBe(true);
      for (const o of spec.options) {
        const long = (o.flags.match(/--[a-z0-9-]+/) as RegExpMatchArray)[0];
        expect(zsh.includes(`'${long}[`), long).toBe(!o.hidden);
        expect(fish.includes(` -l ${long.slice(2)} `), long).toBe(!o.hidden);
      }
    }
    const zsh = readFileSync(file('docs/completions/_guardctl'), 'utf8');
    const fish = readFileSync(file('docs/completions/guardctl.fish'), 'utf8');
    expect(zsh.startsWith('#compdef guardctl')).toBe(true);
    for (const c of COMMANDS) {
      expect(zsh).toContain(`'${c.name}')`);
      expect(fish).toContain(` -a ${c.name.split(' ').at(-1)} `);
    }
  });
});
