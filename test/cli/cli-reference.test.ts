/**
 * The man page and the bash/zsh/fish completions are generated from the command definitions and
 * committed under docs/ (the packages ship docs/): they are current, the man page renders without
 * a groff warning, and the bash completion completes commands, subcommands and options in a real
 * bash.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/cli/command-list.js';
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

  it('the man page names every command and renders without warnings', () => {
    const page = readFileSync(file('docs/man/guardctl.1'), 'utf8');
    for (const c of COMMANDS) expect(page).toContain(`.B guardctl ${c.name.replace(/-/g, '\\-')}`);
    const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', file('docs/man/guardctl.1')], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
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

  it('zsh and fish files cover every command', () => {
    const zsh = readFileSync(file('docs/completions/_guardctl'), 'utf8');
    const fish = readFileSync(file('docs/completions/guardctl.fish'), 'utf8');
    expect(zsh.startsWith('#compdef guardctl')).toBe(true);
    for (const c of COMMANDS) {
      expect(zsh).toContain(`'${c.name}')`);
      expect(fish).toContain(` -a ${c.name.split(' ').at(-1)} `);
    }
  });
});
