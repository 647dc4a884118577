/** `mbuild` command line: the command table, global flags, help, errors. */
import { mark } from '../util/trace.js';
import { MbuildError, UsageError } from '../util/errors.js';
import { HelpRequested, formatFlags, parseArgs } from '../util/args.js';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { defaultRoot } from '../store/default-root.js';
import { BUILD_FLAGS } from './build-flags.js';

interface Command {
  summary: string;
  /** usage lines after "Usage: mbuild " */
  usage: string;
  /** the command's options (help text) */
  options?: () => string;
  /** needs real root (rootless mode cannot run it) */
  root?: boolean;
}

export const COMMANDS: Record<string, Command> = {
  build: { summary: 'build an image from a Dockerfile (the default: "mbuild -t x ." builds)', usage: 'build [OPTIONS] CONTEXT|-|URL', options: () => formatFlags(BUILD_FLAGS) },
  run: {
    summary: "run an image's ENTRYPOINT/CMD in the sandbox (throwaway layer)",
    usage: 'run [OPTIONS] IMAGE [COMMAND] [ARG...]',
    options: () =>
      '  -p, --publish [IP:]HOST:CONTAINER  publish a TCP port (repeatable)\n  --network bridge|host|none|container:NAME  (default bridge)\n  -e, --env K=V          set a variable (repeatable)\n  --name NAME            name it (for --network container:NAME)\n  -u, --user USER  -w, --workdir DIR  --entrypoint CMD  -h, --hostname NAME\n  -m, --memory SIZE  --cpus N  --pids-limit N   resource limits\n  --stop-timeout S       seconds from SIGTERM to kill (default 10)\n  --platform P           the image of this platform from a multi-platform image (another one runs under qemu-user)\n  --rm                   accepted: nothing is ever kept\n',
  },
  images: { summary: 'list images', usage: 'images [OPTIONS] [REPOSITORY[:TAG]]', options: () => '  -q, --quiet     only image IDs\n  --digests       show manifest digests\n  --no-trunc      full image IDs\n  -a, --all       all images (mbuild keeps no intermediate images: the same list)\n' },
  tag: { summary: 'give an image another name', usage: 'tag SOURCE_IMAGE TARGET_IMAGE' },
  rmi: { summary: 'remove image names (or an image by ID)', usage: 'rmi [-f] IMAGE...', options: () => '  -f, --force     remove an image ID that has several names\n' },
  inspect: { summary: "print an image's details as JSON", usage: 'inspect [-f FORMAT] IMAGE...', options: () => '  -f, --format TEMPLATE   Go-template style: {{.Id}}, {{json .Config}}, {{index .Config.Labels "k"}}, {{range}}, {{join}}\n' },
  history: { summary: "show an image's history", usage: 'history [OPTIONS] IMAGE', options: () => '  -q, --quiet     only the IDs\n  --no-trunc      do not shorten the output\n  -H, --human     human-readable sizes and dates (default true)\n' },
  load: { summary: 'load an OCI layout tar or a "docker save" tar', usage: 'load [-i FILE] (or: mbuild load < FILE)', options: () => '  -i, --input FILE   read from FILE instead of stdin\n  -q, --quiet        print less\n' },
  save: { summary: 'write an image as a tar archive', usage: 'save [-o FILE] [--format docker|oci] IMAGE', options: () => '  -o, --output FILE  write to FILE instead of stdout (a terminal is refused)\n  --format docker|oci  (default docker: an OCI layout that docker load also reads)\n' },
  pull: { summary: 'pull an image from a registry', usage: 'pull [--platform P] [-q] NAME', options: () => "  --platform P   os/arch[/variant] (default: this machine's)\n  -q, --quiet    print only the name\n" },
  push: { summary: 'push an image to its registry', usage: 'push [-q] NAME' },
  login: { summary: 'save credentials for a registry', usage: 'login [-u USER] [-p PASS|--password-stdin] [HOST]' },
  logout: { summary: "remove a registry's saved credentials", usage: 'logout [HOST]' },
  prune: { summary: 'remove what no image name needs (and stale temp work)', usage: 'prune [-a|--all] [--format json]', options: () => '  -a, --all   also empty the build cache\n' },
  system: { summary: 'store usage (df) and cleanup (prune)', usage: 'system df [--format json] | system prune [-a]' },
  serve: {
    summary: 'serve builds over gRPC (default unix:///run/mbuild/mbuild.sock)',
    usage: 'serve [--addr ADDR]... [--tlscacert F --tlscert F --tlskey F] [--max-builds N]',
    root: true,
  },
  info: { summary: 'describe the server (with --host)', usage: 'info' },
  version: { summary: 'show the mbuild version', usage: 'version' },
  help: { summary: 'show help for a command', usage: 'help [COMMAND]' },
};

/** Commands that never open the store: they run as the user, without a user namespace. */
const NO_STORE = new Set(['help', 'version', 'login', 'logout', 'info']);

export const USAGE = `Usage: mbuild [--root DIR] [--debug] COMMAND

Commands:
${Object.entries(COMMANDS)
  .map(([n, c]) => `  ${n.padEnd(10)}${c.summary}`)
  .join('\n')}

Global flags (before the command):
  --root DIR                  the store (default $MBUILD_ROOT, else /var/lib/mbuild as root,
                              ~/.local/share/mbuild as a normal user: rootless)
  --debug                     error codes and cause chains
  -H, --host ADDR[,ADDR...]   work on a server (mbuild serve): unix:///PATH or tcp://HOST:PORT (or
                              $MBUILD_HOST); build, images, inspect, system df, prune and info go there
  --tlscacert F --tlscert F --tlskey F   mutual TLS for tcp:// (or $MBUILD_CERT_PATH/{ca,cert,key}.pem)
  --registry-mirror REG=URL   pull REG's images through a mirror (repeatable), e.g. docker.io=http://127.0.0.1:5000
  --insecure-registry HOST    allow plain http / unverified TLS for HOST (repeatable; loopback always is)
  -v, --version               the version

Run "mbuild COMMAND --help" for a command's options.
`;

export function commandHelp(name: string): string {
  const c = COMMANDS[name]!;
  return `Usage: mbuild ${c.usage}\n\n${c.summary[0].toUpperCase()}${c.summary.slice(1)}.\n${c.options ? `\nOptions:\n${c.options()}` : ''}`;
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}

/** cobra's rule: commands within 2 edits, or that start with the word. */
export function suggest(word: string): string[] {
  return Object.keys(COMMANDS).filter((c) => distance(word.toLowerCase(), c) <= 2 || (word.length > 1 && c.startsWith(word.toLowerCase())));
}

/**
 * A first word that is no command builds when it can be a context (`mbuild -t x .` and
 * `mbuild .` build): an existing path, `-`, or a URL. Anything else is an unknown command.
 */
function isContextArg(a: string): boolean {
  return a === '-' || /^(https?|git):\/\//.test(a) || a.startsWith('git@') || a.startsWith('github.com/') || existsSync(a);
}

/** What bin/mbuild.js offers the CLI beyond loading it. */
export interface Launcher {
  /** read every chunk of the bundle now (a long-running server keeps the code it started with) */
  holdBundle?(): void;
}

export async function main(argv: string[], launcher: Launcher = {}): Promise<number> {
  mark('cli.main'); // its time: node's start and the bundle's load
  let debug = argv.includes('--debug');
  let storeRoot = '';
  // `mbuild images | head -1`: a closed pipe ends the command quietly, as it does for docker
  for (const s of [process.stdout, process.stderr])
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(0);
      throw err;
    });
  let command: string | undefined;
  try {
    // global flags come before the command
    let root = process.env.MBUILD_ROOT || '';
    let i = 0;
    const mirrors: string[] = [];
    const insecure: string[] = [];
    // a server to work on (cli/remote.ts): docker's -H/--host and TLS flag names
    let host = process.env.MBUILD_HOST || '';
    const tls: Record<'cacert' | 'cert' | 'key', string | undefined> = { cacert: undefined, cert: undefined, key: undefined };
    for (; i < argv.length; i++) {
      const a = argv[i];
      if (a === '--debug') debug = true;
      else if (a === '--root') root = argv[++i] ?? '';
      else if (a.startsWith('--root=')) root = a.slice(7);
      else if (a === '--registry-mirror' || a === '--insecure-registry') (a === '--registry-mirror' ? mirrors : insecure).push(argv[++i] ?? '');
      else if (a.startsWith('--registry-mirror=')) mirrors.push(a.slice(18));
      else if (a === '-H' || a === '--host') host = argv[++i] ?? '';
      else if (a.startsWith('--host=')) host = a.slice(7);
      else if (/^--tls(cacert|cert|key)(=|$)/.test(a)) {
        const eq = a.indexOf('=');
        tls[(eq > 0 ? a.slice(5, eq) : a.slice(5)) as 'cacert' | 'cert' | 'key'] = eq > 0 ? a.slice(eq + 1) : argv[++i];
      }
      else if (a.startsWith('--insecure-registry=')) insecure.push(a.slice(20));
      else if (a === '-h' || a === '--help') {
        process.stdout.write(USAGE);
        return 0;
      } else if (a === '-v' || a === '--version') {
        command = 'version';
        break;
      } else break;
    }
    if (!root) root = defaultRoot();
    if (mirrors.length || insecure.length) (await import('../registry/settings.js')).configureRegistry({ mirrors, insecure });
    storeRoot = path.resolve(root);
    command ??= argv[i];
    let rest = argv.slice(i + 1);
    if (command === undefined) {
      process.stderr.write(USAGE);
      return 2;
    }
    if (!(command in COMMANDS)) {
      if (!command.startsWith('-') && !isContextArg(command)) {
        const near = suggest(command);
        throw new UsageError(`unknown command "${command}" for "mbuild"${near.length ? ` (did you mean ${near.map((n) => `"${n}"`).join(' or ')}?)` : ''}; run "mbuild --help" for the commands`);
      }
      // `mbuild -t x .` means build
      command = 'build';
      rest = argv.slice(i);
    }
    rest = rest.filter((a) => a !== '--debug');
    // a command's --help is answered here, whatever the host or the user
    if (command !== 'run' && (rest.includes('--help') || (command !== 'build' && command !== 'login' && rest.includes('-h')))) throw new HelpRequested();
    if (host && command !== 'serve' && command !== 'help' && command !== 'version') return await (await import('./remote.js')).remoteCommand(host, tls, command, rest);
    if (process.platform === 'linux' && process.getuid?.() !== 0 && !NO_STORE.has(command) && !(command === 'build' && rest.includes('--check'))) {
      // a quick, clear answer instead of a raw EPERM from the first mount or chown
      if (COMMANDS[command].root) throw new MbuildError('MBUILD_NEEDS_ROOT', `mbuild ${command} needs root (mounts and namespaces): run it with sudo`);
      // rootless (cli/rootless.ts): every command that opens the store runs in the user namespace,
      // where the layers' files have the owners the images give them
      return await (await import('./rootless.js')).reexecRootless(argv, storeRoot);
    }
    return await dispatch(command, root, rest, argv.slice(i + 1), argv, launcher);
  } catch (caught) {
    if (caught instanceof HelpRequested && command) {
      process.stdout.write(commandHelp(command in COMMANDS ? command : 'build'));
      return 0;
    }
    // a full disk anywhere underneath is one clear line (store/recovery.ts; a usage error never
    // comes from a disk: `mbuild typo` does not load the store's code)
    const err = storeRoot && !(caught instanceof UsageError) ? (await import('../store/recovery.js')).asNoSpace(caught, storeRoot) : caught;
    printError(err, debug);
    return err instanceof UsageError ? 2 : 1;
  }
}

async function dispatch(command: string, root: string, rest: string[], raw: string[], argv: string[], launcher: Launcher): Promise<number> {
  const images = () => import('./cmd-images.js');
  switch (command) {
    case 'serve':
      launcher.holdBundle?.();
      return await (await import('../server/serve.js')).serveCommand(root, rest);
    case 'info':
      throw new UsageError('"mbuild info" describes a server: give --host ADDR or set MBUILD_HOST');
    case 'help': {
      const which = rest[0];
      if (which && !(which in COMMANDS)) throw new UsageError(`unknown help topic "${which}"`);
      process.stdout.write(which ? commandHelp(which) : USAGE);
      return 0;
    }
    case 'version':
      return await (await import('./cmd-version.js')).versionCommand(rest);
    case 'build': {
      const { reexecInMountNamespace } = await import('./namespace.js');
      if (rest.includes('-h')) throw new HelpRequested();
      const code = await reexecInMountNamespace(argv);
      if (code !== undefined) return code;
      return await (await import('./cmd-build.js')).buildCommand(root, rest);
    }
    case 'run': {
      // --help only among the options: after the image it belongs to the command
      const firstPositional = raw.findIndex((a) => !a.startsWith('-'));
      if (raw.slice(0, firstPositional < 0 ? raw.length : firstPositional).includes('--help')) throw new HelpRequested();
      const { reexecInMountNamespace } = await import('./namespace.js');
      const code = await reexecInMountNamespace(argv);
      if (code !== undefined) return code;
      // unfiltered: a --debug after the image belongs to the command
      return await (await import('./cmd-run.js')).runCommand(root, raw);
    }
    case 'load':
      return await (await images()).loadCommand(root, rest);
    case 'save':
      return await (await images()).saveCommand(root, rest);
    case 'images':
      return await (await images()).imagesCommand(root, rest);
    case 'tag':
      return await (await images()).tagCommand(root, rest);
    case 'rmi':
      return await (await images()).rmiCommand(root, rest);
    case 'inspect':
      return await (await images()).inspectCommand(root, rest);
    case 'history':
      return await (await images()).historyCommand(root, rest);
    case 'prune':
      return await (await import('./cmd-system.js')).pruneCommand(root, rest);
    case 'system':
      return await (await import('./cmd-system.js')).systemCommand(root, rest);
    case 'pull':
      return await (await import('./cmd-registry.js')).pullCommand(root, rest);
    case 'push':
      return await (await import('./cmd-registry.js')).pushCommand(root, rest);
    case 'login':
      return await (await import('./cmd-registry.js')).loginCommand(rest);
    case 'logout':
      return await (await import('./cmd-registry.js')).logoutCommand(rest);
  }
  return 2;
}

export function printError(err: unknown, debug: boolean): void {
  if (err instanceof MbuildError) {
    process.stderr.write(`error: ${err.toString()}\n`);
    for (const d of err.details ?? []) process.stderr.write(`  | ${d}\n`);
    if (debug) {
      process.stderr.write(`code: ${err.code}\n${err.stack}\n`);
      let c = (err as { cause?: unknown }).cause;
      while (c) {
        process.stderr.write(`caused by: ${c instanceof Error ? c.stack : String(c)}\n`);
        c = c instanceof Error ? (c as { cause?: unknown }).cause : undefined;
      }
    }
    return;
  }
  const e = err as NodeJS.ErrnoException;
  process.stderr.write(`error: ${e?.message ?? String(err)}\n`);
  if (debug && e?.stack) process.stderr.write(e.stack + '\n');
}

export { parseArgs };
