/** Build checks through the CLI: the summary after a build, `# check=error=true`, and `build --check`. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, mbuild, mountsUnder } from '../helpers/cli.js';

let tmp: string;
let root: string;

async function context(files: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(tmp, 'ctx-'));
  for (const [name, content] of Object.entries(files)) await fs.writeFile(path.join(dir, name), content);
  return dir;
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-checks-'));
  root = path.join(tmp, 'root');
  expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
});

afterAll(async () => {
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('warnings after a build', () => {
  it('lists each warning with file:line, using the base image environment from the store', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox as Build\nENV PATH=$PAHT:/x\nCMD echo hi\n' });
    const r = await mbuild(['--root', root, 'build', '--progress', 'plain', ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      ' 4 warnings found (mbuild build --check shows them in full):\n' +
        " - StageNameCasing: Stage name 'Build' should be lowercase (Dockerfile:1)\n" +
        " - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (Dockerfile:1)\n" +
        " - UndefinedVar: Usage of undefined variable '$PAHT' (did you mean $PATH?) (Dockerfile:2)\n" +
        ' - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (Dockerfile:3)\n',
    );
  });

  it('shows them when the build fails too', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nMAINTAINER me\nRUN exit 3\n' });
    const r = await mbuild(['--root', root, 'build', '--progress', 'plain', ctx]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(' - MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (Dockerfile:2)');
  });

  it('prints nothing with # check=skip=all', async () => {
    const ctx = await context({ Dockerfile: '# check=skip=all\nFROM busybox as Build\nCMD echo hi\n' });
    const r = await mbuild(['--root', root, 'build', '--progress', 'plain', ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('warning');
  });

  it('fails before running anything with # check=error=true', async () => {
    const ctx = await context({ Dockerfile: '# check=error=true;skip=JSONArgsRecommended\nFROM busybox\nRUN echo ran > /ran\nMAINTAINER me\n' });
    const r = await mbuild(['--root', root, 'build', '--progress', 'plain', ctx]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('error: Dockerfile:4: lint violation found for rules: MaintainerDeprecated');
    expect(r.stderr).not.toContain('RUN echo ran');
  });
});

describe('mbuild build --check', () => {
  it('checks offline without a store or base image, exit 1 when something is found', async () => {
    const noRoot = path.join(tmp, 'never-created');
    const ctx = await context({ Dockerfile: 'FROM registry.invalid/nothing:1 AS base\nWORKDIR app\nEXPOSE 8080:80\n', '.dockerignore': 'secret.txt\n' });
    const r = await mbuild(['--root', noRoot, 'build', '--check', ctx]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('Check complete, 2 warnings have been found!');
    expect(r.stdout).toContain('WARNING: WorkdirRelativePath - https://docs.docker.com/go/dockerfile/rule/workdir-relative-path/\nRelative workdir "app" can have unexpected results if the base image changes\nDockerfile:2\n');
    expect(r.stdout).toContain(" 3 | >>> EXPOSE 8080:80");
    expect(existsSync(noRoot)).toBe(false);
  });

  it('exits 0 on a clean Dockerfile and reports what the build would refuse as an error', async () => {
    const clean = await context({ Dockerfile: 'FROM busybox\nCOPY a /a\nCMD ["sh"]\n', a: 'x' });
    const ok = await mbuild(['--root', root, 'build', '--check', clean]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('Check complete, no warnings found.\n');

    const bad = await context({ Dockerfile: 'FROM busybox\nCOPY secret.txt /s\nEXPOSE 70000\n', '.dockerignore': 'secret.txt\n' });
    const r = await mbuild(['--root', root, 'build', '--check', bad]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('Attempting to Copy file "secret.txt" that is excluded by .dockerignore');
    expect(r.stderr).toContain('error: Dockerfile:3: invalid containerPort: 70000');
  });

  it('judges UndefinedVar on a base image in the store, and names the base images it could not judge', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nENV A=$NOPE B=$PATH\nFROM registry.invalid/absent:1\nENV C=$ALSO_NOPE\n' });
    const r = await mbuild(['--root', root, 'build', '--check', ctx]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("Usage of undefined variable '$NOPE'");
    expect(r.stdout).not.toContain("variable '$PATH'");
    expect(r.stdout).not.toContain("variable '$ALSO_NOPE'");
    expect(r.stderr).toBe('NOTE: UndefinedVar was not checked in the stages built on registry.invalid/absent:1: not in the local store (mbuild pull, then --check again)\n');
  });

  it('reports what a build refuses before any step runs: COPY/ADD rules, --from references, entitlements', async () => {
    const cases: [string, string, string[]?][] = [
      ['FROM busybox\nCOPY a b /c\n', 'error: Dockerfile:2: When using COPY with more than one source file, the destination must be a directory and end with a /'],
      ['FROM busybox\nCOPY --chmod=8000 a /c\n', "error: Dockerfile:2: COPY --chmod: invalid chmod parameter: '8000'. it should be octal string and between 0 and 07777"],
      ['FROM busybox\nCOPY --from=Not:Valid /a /c\n', 'error: Dockerfile:2: invalid reference format: "Not:Valid" (repository names must be lowercase)'],
      ['FROM Busy:Box\n', 'error: Dockerfile:1: invalid reference format: "Busy:Box" (repository names must be lowercase)'],
      ['FROM busybox\nRUN --security=insecure true\n', 'error: Dockerfile:2: RUN --security=insecure needs the security.insecure entitlement: build with --allow security.insecure'],
    ];
    for (const [df, want] of cases) {
      const r = await mbuild(['--root', root, 'build', '--check', await context({ Dockerfile: df })]);
      expect(r.code, df).toBe(1);
      expect(r.stderr.split('\n')[0], df).toBe(want);
    }
    const allowed = await mbuild(['--root', root, 'build', '--check', '--allow', 'security.insecure', await context({ Dockerfile: 'FROM busybox\nRUN --security=insecure true\n' })]);
    expect(allowed.code, allowed.stderr).toBe(0);
  });

  it('checks only the stages --target needs', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox AS a\nCMD echo a\nFROM busybox AS b\nCMD ["b"]\n' });
    expect((await mbuild(['--root', root, 'build', '--check', ctx])).code).toBe(1);
    const r = await mbuild(['--root', root, 'build', '--check', '--target', 'b', ctx]);
    expect(r.code, r.stdout).toBe(0);
  });
});
