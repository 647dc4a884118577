/**
 * `--progress tty` (and auto on a terminal) driven through a real pseudo-terminal
 * (test/helpers/pty-drive.py, python's pty module): the live display, CACHED steps,
 * the running steps' last lines, peak memory kept, and Ctrl-C showing what it cancelled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, REPO, mbuild, run } from '../helpers/cli.js';

let work: string;
let root: string;
let ctx: string;

async function onTty(args: string[], env: Record<string, string> = {}): Promise<{ screen: string; raw: string; code: number }> {
  const r = await run('python3', [path.join(REPO, 'test/helpers/pty-drive.py'), path.join(REPO, 'bin/mbuild'), '--root', root, ...args], { env: { COLUMNS: '100', ...env } });
  const code = Number(/EXIT (-?\d+)/.exec(r.stderr)?.[1]);
  // the last frame: what follows the last "cursor up" of the redraw, escapes removed
  const last = r.stdout.split(/\x1b\[\d+A/).pop() ?? '';
  const screen = last.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\r/g, '');
  return { screen, raw: r.stdout, code };
}

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-cli-tty-'));
  root = path.join(work, 'store');
  expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
  ctx = path.join(work, 'ctx');
  await fs.mkdir(ctx);
  await fs.writeFile(
    path.join(ctx, 'Dockerfile'),
    'FROM busybox AS a\nRUN for i in 1 2 3 4 5 6 7 8; do echo line $i; sleep 0.3; done\nFROM busybox\nRUN echo cached-one\nCOPY --from=a /bin/true /t\nRUN sleep ${WAIT:-0}\n',
  );
  await fs.writeFile(path.join(ctx, 'Dockerfile'), (await fs.readFile(path.join(ctx, 'Dockerfile'), 'utf8')).replace('FROM busybox\nRUN echo', 'FROM busybox\nARG WAIT\nRUN echo'));
  // a step that prints a line no Dockerfile text holds (Ctrl-C is typed once it appears), then waits
  await fs.mkdir(path.join(work, 'long'));
  await fs.writeFile(path.join(work, 'long', 'Dockerfile'), 'FROM busybox\nRUN echo long-$((1+1))-started; sleep 30\n');
}, 120_000);

afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('--progress tty', () => {
  it('draws a live display: parallel stages, running steps with their last lines, then finished steps collapsed', async () => {
    const r = await onTty(['build', ctx]); // auto: a terminal
    expect(r.code).toBe(0);
    // while it ran: both stages at once, and the loop's latest lines under its step
    const frames = r.raw.split(/\x1b\[\d+A/);
    expect(frames.some((f) => /=> \[a 2\/2\] RUN for i in/.test(f) && f.includes(' => => # line 1') && f.includes('[stage-1 '))).toBe(true);
    expect(r.raw).toContain(' => => # line 8');
    expect(r.raw).not.toMatch(/^#\d+ /m); // not the plain form
    const lines = r.screen.trim().split('\n');
    expect(lines[0]).toMatch(/^\[\+\] Building \d+\.\ds \(\d+\/\d+\) FINISHED$/);
    expect(r.screen).toMatch(/ => \[a 2\/2\] RUN for i in 1 2 3 4 5 6 7 8; do echo line \$i; sleep 0\.3; done +\d+\.\ds\n => => peak memory [\d.]+[kMG]?B, cpu [\d.]+s\n/);
    // finished: collapsed (no output lines left on the screen)
    expect(r.screen).not.toContain('=> => # line');
    expect(lines.every((l) => l.length <= 100)).toBe(true);
  });
  it('marks cached steps CACHED', async () => {
    const r = await onTty(['build', '--progress', 'tty', ctx]);
    expect(r.code).toBe(0);
    expect(r.screen).toMatch(/ => CACHED \[stage-1 3\/5\] RUN echo cached-one +0\.0s/);
  });
  it('Ctrl-C shows the step it cancelled', async () => {
    const r = await onTty(['build', '--no-cache', path.join(work, 'long')], { INTERRUPT_ON: 'long-2-started' });
    expect(r.code).not.toBe(0);
    expect(r.screen).toMatch(/ => CANCELED \[stage-0 2\/2\] RUN echo long-\$\(\(1\+1\)\)-started; sleep 30/);
  });
  it('--progress plain: Ctrl-C shows the step it cancelled too', async () => {
    const r = await onTty(['build', '--progress', 'plain', '--no-cache', path.join(work, 'long')], { INTERRUPT_ON: 'long-2-started' });
    expect(r.code).not.toBe(0);
    expect(r.raw).toMatch(/#(\d+) \[stage-0 2\/2\] RUN echo long-\$\(\(1\+1\)\)-started; sleep 30[\s\S]*#\1 CANCELED/);
  });
});
