/**
 * native/procevents' boost (boost.c), with real processes as root: each test runs a small Node
 * program in a child process that opens the addon with `boost: true` and looks at its own JS
 * thread from inside the batches the reader hands it (/proc/thread-self): raised to SCHED_FIFO 1
 * for the batch, back to its nice and slice after endBoost, children forked meanwhile at SCHED_OTHER
 * and nice 0; a batch JS never ends is ended by the keeper's timer; a JS thread that keeps spending
 * its boosts runs out of budget; without the privilege to outrank it, no boost is made and the
 * counters say why.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { SCHED_ADDON_PATH } from '../../../src/daemon/priority.js';
import { PROCEVENTS_ADDON_PATH } from '../../../src/sensors/process-sources/exec-events-source.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

/**
 * The child's preamble: the addons, `self()` (this thread's policy, real-time priority, nice and
 * slice from /proc/thread-self) and `execs(n)` (n /bin/true runs, one at a time).
 */
const PREAMBLE = `
const { readFileSync } = require('node:fs');
const { spawnSync, execFileSync } = require('node:child_process');
const addon = require(${JSON.stringify(PROCEVENTS_ADDON_PATH)});
const sched = require(${JSON.stringify(SCHED_ADDON_PATH)});
function self() {
  const stat = readFileSync('/proc/thread-self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const s = readFileSync('/proc/thread-self/sched', 'utf8');
  return { policy: Number(f[38]), rtprio: Number(f[37]), nice: Number(f[16]),
           slice: Number(/^se\\.slice\\s*:\\s*(\\d+)/m.exec(s)?.[1]) };
}
const out = (x) => { process.stdout.write(JSON.stringify(x)); process.exit(0); };
setTimeout(() => out({ error: 'timed out' }), 20000).unref();
`;

/** Runs `body` after the preamble in a child node (through `wrapper`, a command that execs it); its JSON. */
interface Seen {
  readonly [key: string]: unknown;
  readonly counters: Record<string, number | boolean | string>;
}

function child(body: string, wrapper: readonly string[] = []): Seen {
  const argv = [...wrapper, process.execPath, '-e', PREAMBLE + body];
  const r = spawnSync(argv[0] as string, argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
  expect(r.stderr, r.stdout).toBe('');
  return JSON.parse(r.stdout);
}

describe.runIf(runnable)('exec events boost (native/procevents/boost.c)', () => {
  it('raises the JS thread to SCHED_FIFO 1 for a batch; endBoost puts back its nice and slice; its children start at nice 0', () => {
    const r = child(`
      require('node:os').setPriority(0, -10);
      sched.setSlice(Number(readFileSync('/proc/thread-self/stat', 'utf8').split(' ')[0]), 700000);
      const before = self();
      let h, during, kid;
      h = addon.open(() => {
        if (h === undefined) return;
        if (during === undefined) {
          clearInterval(tick);
          during = self();
          // a child forked while raised: its own policy and nice as it starts
          kid = execFileSync('sh', ['-c', 'cut -d" " -f19,41 /proc/$$/stat'], { encoding: 'utf8' }).trim();
        }
        // The child's own execs raise it again (a newer batch keeps its boost): each batch ends
        // the boost of the batches delivered so far, until none is on its way.
        addon.endBoost(h);
        const after = self();
        if (after.policy === 0)
          out({ before, during, kid, after, resetOnFork: sched.resetOnFork(0), counters: addon.counters(h) });
      }, { rcvbuf: 1 << 20, boost: true });
      const tick = setInterval(() => execFileSync('/bin/true'), 50);
    `);
    expect(r.before).toMatchObject({ policy: 0, nice: -10 });
    expect(r.during, JSON.stringify(r)).toMatchObject({ policy: 1, rtprio: 1 });
    expect(r.kid).toBe('0 0');
    // the same fair policy, nice and slice as before the batch
    expect(r.after).toEqual(r.before);
    expect(r.resetOnFork).toBe(true);
    expect(r.counters).toMatchObject({ boost: true, boostOverruns: 0, boostErrors: 0 });
    expect(r.counters.boosts).toBeGreaterThanOrEqual(1);
  });

  it('a boost JS does not end is ended by its keeper thread within its bound, and counted', () => {
    const r = child(`
      let h, t0, lowered = null;
      h = addon.open(() => {
        if (h === undefined || t0 !== undefined) return;
        const raised = self().policy;
        t0 = process.hrtime.bigint();
        // JS stuck in the batch (never calls endBoost): spins until it is lowered, 2 s at most
        while (Number(process.hrtime.bigint() - t0) < 2e9) {
          if (self().policy === 0) { lowered = Number(process.hrtime.bigint() - t0) / 1e6; break; }
        }
        out({ raised, lowered, counters: addon.counters(h) });
      }, { rcvbuf: 1 << 20, boost: true });
      setInterval(() => execFileSync('/bin/true'), 50);
    `);
    expect(r.raised, JSON.stringify(r)).toBe(1);
    // BOOST_MAX_NS is 20 ms; the bound here leaves room for a busy machine, the spin lasts 2 s
    expect(r.lowered).not.toBeNull();
    expect(r.lowered as number).toBeLessThan(1000);
    expect(r.counters).toMatchObject({ boost: true });
    expect(r.counters.boostOverruns).toBeGreaterThanOrEqual(1);
  });

  it('a JS thread that spends its boosts runs out of budget: later batches are handed over at its own priority', () => {
    const r = child(`
      let h, batches = 0, unboosted = 0;
      h = addon.open(() => {
        if (h === undefined) return;
        batches++;
        if (self().policy === 0) unboosted++;
        // 30 ms of work in every batch, never ended: each boost costs the 20 ms the reader allows
        const t0 = process.hrtime.bigint();
        while (Number(process.hrtime.bigint() - t0) < 30e6);
        if (unboosted > 0 || batches >= 40) out({ batches, unboosted, counters: addon.counters(h) });
        setImmediate(() => execFileSync('/bin/true'));
      }, { rcvbuf: 1 << 20, boost: true });
      setInterval(() => {}, 1000); // the addon's handle does not keep the process alive
      execFileSync('/bin/true');
    `);
    // the budget (100 ms, refilled at 10 % of a core) covers at most ~6 such boosts in 40 batches
    expect(r.unboosted as number, JSON.stringify(r)).toBeGreaterThanOrEqual(1);
    const c = r.counters as Record<string, number>;
    expect(c.boosts).toBeTypeOf('number');
    expect(c.boostOverBudget).toBeGreaterThanOrEqual(1);
    // every boost but one still running when the counters were read was ended by the keeper
    expect(c.boostOverruns).toBeGreaterThanOrEqual((c.boosts as number) - 1);
  });

  it('makes no boost when the reader cannot outrank the JS thread (no CAP_SYS_NICE), and says why', () => {
    const r = child(
      `
      let h;
      h = addon.open(() => {
        if (h === undefined) return;
        out({ during: self(), counters: addon.counters(h) });
      }, { rcvbuf: 1 << 20, boost: true });
      setInterval(() => execFileSync('/bin/true'), 50);
    `,
      // root without CAP_SYS_NICE and with no real-time allowance: the reader cannot take SCHED_FIFO
      ['setpriv', '--bounding-set=-sys_nice', '--inh-caps=-sys_nice'],
    );
    expect(r.during).toMatchObject({ policy: 0 });
    expect(r.counters).toMatchObject({ boost: false, boosts: 0 });
    expect(r.counters.boostOff).toMatch(/boost thread cannot run above real-time priority 1/);
  });
});
