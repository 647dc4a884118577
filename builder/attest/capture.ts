/**
 * What a finished build tells its provenance, assembled from the plan and the steps the build
 * ran (in the order they ran): the filesystem steps as BuildKit's LLB would have them (an image
 * source per base image, then RUN, COPY, ADD and WORKDIR of each stage, each reading the step
 * before it and, for COPY --from, the last step of that stage or that image's source), the
 * secrets and ssh agents RUN mounts used, and the images read with their digests.
 */
import type { Instruction } from '../dockerfile/types.js';
import type { Plan } from '../plan/plan.js';
import type { Platform } from '../../store/oci.js';
import type { BuildStep } from './provenance.js';

/** The build as provenance tells it: when, from which images, with which steps (the executor fills it). */
export interface BuildRecord {
  startedOn: Date;
  plan: Plan;
  dockerfileText: string;
  /** images read (FROM, COPY --from, RUN --mount=from), by the reference the Dockerfile gave */
  images: Map<string, ImageRead>;
  /** the steps in the order they ran, with the index of the layer each gave the image */
  trace: TracedStep[];
}

export interface TracedStep {
  stage: number;
  ins: Instruction;
  /** index of the layer it made among the final image's layers, when it made one the image has */
  layerIndex?: number;
}

export interface ImageRead {
  /** as the Dockerfile (or a named context) wrote it */
  ref: string;
  digest: string;
  platform?: Platform;
}

function mountOptions(raw: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of raw.split(',')) {
    const eq = part.indexOf('=');
    out[(eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase()] = eq < 0 ? 'true' : part.slice(eq + 1).trim();
  }
  return out;
}

export function buildSteps(plan: Plan, trace: TracedStep[], images: Map<string, ImageRead>): BuildStep[] {
  const steps: BuildStep[] = [];
  const lastOf = new Map<number, number>(); // stage → its last step
  const sourceOf = new Map<string, number>(); // image ref → its source step
  const source = (ref: string): number | undefined => {
    const img = images.get(ref);
    if (!img) return undefined;
    let n = sourceOf.get(ref);
    if (n === undefined) {
      n = steps.push({ op: { source: { identifier: `docker-image://${img.ref}@${img.digest}` }, ...(img.platform ? { platform: img.platform } : {}) }, inputs: [] }) - 1;
      sourceOf.set(ref, n);
    }
    return n;
  };
  const started = new Set<number>();
  for (const t of trace) {
    const stage = plan.stages[t.stage]!;
    if (!started.has(t.stage)) {
      started.add(t.stage);
      const base = stage.base.kind === 'image' ? source(stage.base.ref) : stage.base.kind === 'stage' ? lastOf.get(stage.base.index) : undefined;
      if (base !== undefined) lastOf.set(t.stage, base);
    }
    const ins = t.ins;
    if (ins.kind !== 'run' && ins.kind !== 'copy' && ins.kind !== 'add' && ins.kind !== 'workdir') continue;
    const inputs: number[] = [];
    const prev = lastOf.get(t.stage);
    if (prev !== undefined) inputs.push(prev);
    if ((ins.kind === 'copy' || ins.kind === 'add') && ins.from !== undefined) {
      const i = /^\d+$/.test(ins.from) ? Number(ins.from) : plan.stages.findIndex((s) => s.name === ins.from!.toLowerCase());
      const from = i >= 0 ? lastOf.get(i) : source(ins.from);
      if (from !== undefined) inputs.push(from);
    }
    const op =
      ins.kind === 'run'
        ? { exec: { meta: { args: ins.cmd.shell ? [ins.cmd.command] : ins.cmd.args }, ...(ins.network ? { network: ins.network } : {}) } }
        : { file: { instruction: ins.raw } };
    const n = steps.push({ op, inputs, lines: [ins.range.start, ins.range.end], ...(t.layerIndex !== undefined ? { layerIndex: t.layerIndex } : {}) }) - 1;
    lastOf.set(t.stage, n);
  }
  return steps;
}

/** The secrets and ssh agents the build's RUN steps mounted (BuildKit records them in mode=max). */
export function mountedSecrets(trace: TracedStep[]): { secrets: { id: string; optional?: boolean }[]; ssh: { id: string; optional?: boolean }[] } {
  const secrets = new Map<string, boolean>();
  const ssh = new Map<string, boolean>();
  for (const t of trace) {
    if (t.ins.kind !== 'run') continue;
    for (const raw of t.ins.mounts) {
      const o = mountOptions(raw);
      const required = o.required === 'true';
      if (o.type === 'secret') {
        const id = o.id ?? (o.target ?? o.dst ?? o.destination ?? '').split('/').pop() ?? '';
        if (id) secrets.set(id, (secrets.get(id) ?? true) && !required);
      } else if (o.type === 'ssh') {
        // an ssh mount is required unless required=false
        const id = o.id ?? 'default';
        ssh.set(id, (ssh.get(id) ?? true) && o.required === 'false');
      }
    }
  }
  const list = (m: Map<string, boolean>) => [...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, optional]) => ({ id, ...(optional ? { optional } : {}) }));
  return { secrets: list(secrets), ssh: list(ssh) };
}
