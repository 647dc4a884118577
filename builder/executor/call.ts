/**
 * `--call METHOD[,format=json|text]` as buildx reads it: build (the default), check (--check),
 * outline and targets (builder/checks/outline.ts: from the Dockerfile alone, printed on stdout as
 * buildx prints them). Nothing else is accepted.
 */
import path from 'node:path';
import { UsageError } from '../../util/errors.js';
import { dockerfileOutline, dockerfileTargets, printOutline, printTargets, resultJson } from '../checks/outline.js';
import { readDockerfile } from './read-dockerfile.js';

export interface CallRequest {
  method: 'build' | 'check' | 'outline' | 'targets';
  format: 'text' | 'json';
}

export function parseCall(spec: string): CallRequest {
  const fields = spec.split(',').map((f) => f.trim());
  const name = fields.filter((f) => !f.includes('='));
  if (name.length > 1) throw new UsageError(`--call ${spec}: one method`);
  // buildx: "check" is its alias of "lint"
  const method = name[0] === 'lint' ? 'check' : (name[0] ?? 'build');
  if (method !== 'build' && method !== 'check' && method !== 'outline' && method !== 'targets')
    throw new UsageError(`--call ${spec}: ${method} is not supported (build, check, outline or targets; subrequests.describe is not made by mbuild)`);
  let format: CallRequest['format'] = 'text';
  for (const f of fields.filter((x) => x.includes('='))) {
    const [k, v] = [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)];
    if (k === 'format' && (method === 'outline' || method === 'targets')) {
      if (v !== 'json' && v !== 'text') throw new UsageError(`--call ${spec}: format=${v} is not json or text`);
      format = v;
    } else throw new UsageError(`--call ${spec}: the option ${k}= is not supported${method === 'check' ? ' for check (# check=error=true in the Dockerfile makes warnings errors)' : ' (format=json|text for outline and targets)'}`);
  }
  return { method, format };
}

/** outline / targets: the answer on stdout; nothing is built. */
export async function callCommand(call: CallRequest, opts: { dockerfile: string; buildArgs: Record<string, string>; target?: string }): Promise<number> {
  const text = await readDockerfile(opts.dockerfile);
  const file = path.basename(opts.dockerfile);
  if (call.method === 'outline') {
    const o = dockerfileOutline(text, { file, target: opts.target, buildArgs: opts.buildArgs });
    process.stdout.write(call.format === 'json' ? resultJson(o) + '\n' : printOutline(o));
  } else {
    const l = dockerfileTargets(text, file);
    process.stdout.write(call.format === 'json' ? resultJson(l) + '\n' : printTargets(l));
  }
  return 0;
}
