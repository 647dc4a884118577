/** `mbuild` command line: build (default), load, save, images, rmi, inspect. */
import { MbuildError, UsageError } from '../../util/errors.js';
import { parseArgs } from './args.js';
import path from 'node:path';
import { defaultRoot } from '../../store/store.js';

export const USAGE = `Usage: mbuild [--root DIR] [--debug] COMMAND

Commands:
  build [OPTIONS] CONTEXT     build an image from a Dockerfile (the default: "mbuild -t x ." builds)
      -t, --tag NAME            name the image (repeatable)
      -f, --file FILE           the Dockerfile (default CONTEXT/Dockerfile)
      --build-arg K=V           set a build-time variable (repeatable; "K" alone takes it from the environment)
      --target STAGE            build up to this stage
      --network bridge|host|none  network for RUN steps (default bridge: own eth0 on mbuild0, NAT out)
      -m, --memory SIZE         memory limit for every RUN (e.g. 512m); --cpus N, --pids-limit N likewise
      -o, --output SPEC         type=oci|docker|tar|local,dest=PATH (repeatable)
      --no-cache                do not use the build cache
      --cache-from SPEC         read a shared build cache: IMAGE, type=registry,ref=R or type=local,src=DIR (repeatable)
      --cache-to SPEC           write one: type=registry,ref=R[,mode=min|max], type=local,dest=DIR or type=inline
      --progress auto|plain|tty progress output style
      -q, --quiet               print only the image id
  run [OPTIONS] IMAGE [COMMAND] [ARG...]   run an image's ENTRYPOINT/CMD in the sandbox (throwaway layer)
      -p, --publish [IP:]HOST:CONTAINER   publish a TCP port (repeatable)
      --network bridge|host|none|container:NAME   (default bridge)
      -e, --env K=V             set a variable (repeatable); --name N, -u USER, -w DIR, --entrypoint CMD
      -m, --memory SIZE, --cpus N, --pids-limit N   resource limits; --rm is accepted (nothing is kept)
  load -i FILE                load an OCI layout tar or a "docker save" tar
  save -o FILE [--format docker|oci] NAME   write an image as a tar archive
  images                      list images
  rmi NAME...                 remove image names
  inspect NAME                print an image's manifest and config as JSON
  prune [--all]               remove blobs and snapshots no image name needs, and stale temp work
                                (--all: also the build cache)
  system df [--format json]   what the store holds and what prune would free
  pull [--platform P] NAME    pull an image from a registry (linux/amd64 unless --platform)
  push NAME                   push an image to its registry
  login [-u USER] [--password-stdin] [HOST]   save credentials for a registry (docker.io by default)
  logout [HOST]               remove a registry's saved credentials

  serve [--addr ADDR]... [--tlscacert F --tlscert F --tlskey F] [--max-builds N]
                              serve builds over gRPC (default unix:///run/mbuild/mbuild.sock)
  info                        describe the server (with --host)

Global server flags (before the command): build, images, inspect, system df, prune run on a server
  -H, --host ADDR[,ADDR...]   unix:///PATH or tcp://HOST:PORT (or $MBUILD_HOST); several: one per repository
  --tlscacert F --tlscert F --tlskey F   mutual TLS for tcp:// (or $MBUILD_CERT_PATH/{ca,cert,key}.pem)

Global registry flags (before the command):
  --registry-mirror REG=URL   pull REG's images through a mirror (repeatable), e.g. docker.io=http://127.0.0.1:5000
  --insecure-registry HOST    allow plain http / unverified TLS for HOST (repeatable; loopback always is)
`;

const COMMANDS = new Set(['serve', 'info', 'build', 'run', 'load', 'save', 'images', 'rmi', 'inspect', 'prune', 'system', 'help', 'pull', 'push', 'login', 'logout']);

export async function main(argv: string[]): Promise<number> {
  let debug = argv.includes('--debug');
  let storeRoot = '';
  try {
    // global flags come before the command
    let root = process.env.MBUILD_ROOT || '';
    let i = 0;
    const mirrors: string[] = [];
    const insecure: string[] = [];
    // a server to work on (server/client.ts): docker's -H/--host and TLS flag names
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
      } else break;
    }
    if (!root) root = defaultRoot();
    if (mirrors.length || insecure.length) (await import('../../registry/settings.js')).configureRegistry({ mirrors, insecure });
    storeRoot = path.resolve(root);
    let command = argv[i];
    let rest = argv.slice(i + 1);
    if (command === undefined) {
      process.stderr.write(USAGE);
      return 2;
    }
    if (!COMMANDS.has(command)) {
      // `mbuild -t x .` means build
      command = 'build';
      rest = argv.slice(i);
    }
    rest = rest.filter((a) => a !== '--debug');
    if (host && command !== 'serve' && command !== 'help') return await (await import('../../server/client.js')).remoteCommand(host, tls, command, rest);
    switch (command) {
      case 'help':
        process.stdout.write(USAGE);
        return 0;
      case 'serve':
        return await (await import('../../server/serve.js')).serveCommand(root, rest);
      case 'info':
        throw new UsageError('"mbuild info" describes a server: give --host ADDR or set MBUILD_HOST');
      case 'build': {
        const { reexecInMountNamespace } = await import('./namespace.js');
        const code = await reexecInMountNamespace(argv);
        if (code !== undefined) return code;
        return await (await import('./cmd-build.js')).buildCommand(root, rest);
      }
      case 'run': {
        const { reexecInMountNamespace } = await import('./namespace.js');
        const code = await reexecInMountNamespace(argv);
        if (code !== undefined) return code;
        // unfiltered: a --debug after the image belongs to the command
        return await (await import('./cmd-run.js')).runCommand(root, argv.slice(i + 1));
      }
      case 'load':
        return await (await import('./cmd-images.js')).loadCommand(root, rest);
      case 'save':
        return await (await import('./cmd-images.js')).saveCommand(root, rest);
      case 'images':
        return await (await import('./cmd-images.js')).imagesCommand(root, rest);
      case 'rmi':
        return await (await import('./cmd-images.js')).rmiCommand(root, rest);
      case 'inspect':
        return await (await import('./cmd-images.js')).inspectCommand(root, rest);
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
  } catch (caught) {
    // a full disk anywhere underneath is one clear line (store/recovery.ts)
    const err = storeRoot ? (await import('../../store/recovery.js')).asNoSpace(caught, storeRoot) : caught;
    printError(err, debug);
    return err instanceof UsageError ? 2 : 1;
  }
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
