/** Registry commands: pull, push, login, logout. */
import { parseArgs } from '../util/args.js';
import { Progress } from './progress.js';
import { Store } from '../store/store.js';
import { familiarName } from '../store/reference.js';
import { RegistryAuthError, UsageError } from '../util/errors.js';

async function withTransport<T>(fn: () => Promise<T>): Promise<T> {
  const { closeTransport } = await import('../registry/transport.js');
  try {
    return await fn();
  } finally {
    await closeTransport();
  }
}

export async function pullCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, [
    { names: ['--platform'], key: 'platform', kind: 'string' },
    { names: ['-q', '--quiet'], key: 'quiet', kind: 'bool' },
  ]);
  if (positional.length !== 1) throw new UsageError('"mbuild pull" needs one image name, e.g. mbuild pull busybox:latest');
  const { parsePlatform } = await import('../registry/reference.js');
  const platform = flags.platform ? parsePlatform(flags.platform as string) : undefined;
  const quiet = Boolean(flags.quiet);
  const progress = new Progress(process.stderr, quiet);
  const store = await Store.open(root);
  const { pullImage } = await import('../registry/pull.js');
  const res = await withTransport(() => pullImage(store, positional[0], { platform, explicitPlatform: platform !== undefined, progress }));
  if (!quiet) process.stdout.write(`Digest: ${res.manifestDigest}\n`);
  process.stdout.write(`${res.name}\n`);
  return 0;
}

export async function pushCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, [{ names: ['-q', '--quiet'], key: 'quiet', kind: 'bool' }]);
  if (positional.length !== 1) throw new UsageError('"mbuild push" needs one image name, e.g. mbuild push registry.example:5000/app:1');
  const quiet = Boolean(flags.quiet);
  const progress = new Progress(process.stderr, quiet);
  const store = await Store.open(root);
  const { pushImage } = await import('../registry/push.js');
  const res = await withTransport(() => pushImage(store, positional[0], { progress }));
  process.stdout.write(`${familiarName(res.name)}: digest: ${res.digest}\n`);
  return 0;
}

/** HOST as given to login/logout (`https://host/v1/` spellings too); docker.io when absent. */
async function loginHost(arg: string | undefined): Promise<string> {
  const { canonicalRegistry } = await import('../registry/settings.js');
  if (!arg) return 'docker.io';
  const host = canonicalRegistry(arg.replace(/^[a-z]+:\/\//i, '').split('/')[0]);
  if (!host) throw new UsageError(`invalid registry "${arg}"`);
  return host;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Ask on the terminal; with `secret`, nothing is echoed. */
function prompt(question: string, secret: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    let value = '';
    const wasRaw = stdin.isRaw;
    if (secret) stdin.setRawMode(true);
    stdin.resume();
    const onData = (d: Buffer) => {
      for (const ch of d.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          finish();
          resolve(value);
          return;
        }
        if (ch === '\u0003') {
          finish();
          reject(new UsageError('login canceled'));
          return;
        }
        if (ch === '\u007f') value = value.slice(0, -1);
        else value += ch;
      }
    };
    const finish = () => {
      stdin.off('data', onData);
      if (secret) {
        stdin.setRawMode(wasRaw);
        process.stderr.write('\n');
      }
      stdin.pause();
    };
    stdin.on('data', onData);
  });
}

export async function loginCommand(argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, [
    { names: ['-u', '--username'], key: 'username', kind: 'string' },
    { names: ['-p', '--password'], key: 'password', kind: 'string' },
    { names: ['--password-stdin'], key: 'passwordStdin', kind: 'bool' },
  ]);
  if (positional.length > 1) throw new UsageError('"mbuild login" takes at most one registry');
  const host = await loginHost(positional[0]);
  let username = flags.username as string | undefined;
  let password = flags.password as string | undefined;
  if (password !== undefined && flags.passwordStdin) throw new UsageError('--password and --password-stdin are mutually exclusive');
  if (flags.passwordStdin) {
    if (!username) throw new UsageError('must provide --username with --password-stdin');
    password = (await readStdin()).replace(/[\r\n]+$/, '');
  } else if (password !== undefined) {
    process.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
  }
  if (!process.stdin.isTTY && (username === undefined || password === undefined)) {
    throw new UsageError('"mbuild login" needs -u USER and --password-stdin when not run on a terminal');
  }
  username ??= (await prompt('Username: ', false)).trim();
  password ??= await prompt('Password: ', true);
  if (!username) throw new UsageError('the username is empty');
  if (!password) throw new UsageError('the password is empty');

  const { pushEndpoint } = await import('../registry/mirrors.js');
  const { RegistryClient } = await import('../registry/client.js');
  const { Authenticator } = await import('../registry/auth.js');
  const { storeCredentials } = await import('../registry/credentials.js');
  const ep = pushEndpoint(host);
  const creds = { username, password };
  await withTransport(async () => {
    const client = new RegistryClient(ep, '', false, new Authenticator(ep.url, ep.credName, creds));
    try {
      await client.ping();
    } catch (err) {
      if (err instanceof RegistryAuthError) {
        throw new RegistryAuthError(`login to ${host} failed: wrong username or password (HTTP ${err.status ?? 401})`, err.status);
      }
      throw err;
    }
  });
  const where = await storeCredentials(host, creds);
  process.stdout.write(`Login Succeeded (credentials saved in ${where})\n`);
  return 0;
}

export async function logoutCommand(argv: string[]): Promise<number> {
  const { positional } = parseArgs(argv, []);
  if (positional.length > 1) throw new UsageError('"mbuild logout" takes at most one registry');
  const host = await loginHost(positional[0]);
  const { eraseCredentials } = await import('../registry/credentials.js');
  if (await eraseCredentials(host)) process.stdout.write(`Removing login credentials for ${host}\n`);
  else process.stdout.write(`Not logged in to ${host}\n`);
  return 0;
}
