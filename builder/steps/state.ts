/** The state of a stage as its instructions run: layers, config, history, variables in scope. */
import { configPlatform, type TargetPlatform } from '../../util/platform.js';
import type { ContainerConfig, HistoryEntry, ImageConfig } from '../../store/oci.js';
import type { Layer } from '../../snapshotter/snapshotter.js';
import type { EnvLookup } from '../expand/shell-word.js';

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const DEFAULT_SHELL = ['/bin/sh', '-c'];

export interface StageState {
  layers: Layer[];
  config: ContainerConfig;
  /** history entries, one per step (empty_layer decided when the image is written) */
  history: { entry: HistoryEntry; layer?: Layer }[];
  /** history inherited from the base image, kept verbatim */
  baseHistory: HistoryEntry[];
  os: string;
  architecture: string;
  variant?: string;
  /** ARGs declared in this stage, with their values (undefined: declared, no value) */
  args: Map<string, string | undefined>;
  /** CMD was set by this stage (so ENTRYPOINT does not reset it) */
  cmdSetHere: boolean;
  /** build-cache key of the filesystem so far (builder/cache) */
  key: string;
  /** when the newest step was made (history times, so a cached rebuild is byte-identical) */
  created: string;
}

/** `platform`: the stage's platform, for a stage with no image (FROM scratch); an image's config says its own. */
export function baseState(config: ImageConfig | undefined, layers: Layer[], key: string, platform?: TargetPlatform): StageState {
  const plat = configPlatform(platform);
  const c: ContainerConfig = structuredClone(config?.config ?? {});
  if (!(c.Env ?? []).some((e) => e.startsWith('PATH='))) c.Env = [DEFAULT_PATH, ...(c.Env ?? [])];
  return {
    layers: [...layers],
    config: c,
    history: [],
    baseHistory: structuredClone(config?.history ?? []),
    os: config?.os ?? plat.os,
    architecture: config?.architecture ?? plat.architecture,
    variant: config ? config.variant : plat.variant,
    args: new Map(),
    cmdSetHere: false,
    key,
    created: config?.created ?? '1970-01-01T00:00:00Z',
  };
}

/** A child stage (FROM <stage>) starts from a copy of the parent's state; ARGs are inherited. */
export function forkState(s: StageState): StageState {
  return {
    ...s,
    layers: [...s.layers],
    config: structuredClone(s.config),
    history: [...s.history],
    baseHistory: [...s.baseHistory],
    args: new Map(s.args),
    cmdSetHere: false,
  };
}

export function getEnv(s: StageState, key: string): string | undefined {
  const env = s.config.Env ?? [];
  for (let i = env.length - 1; i >= 0; i--) {
    const eq = env[i].indexOf('=');
    const k = eq >= 0 ? env[i].slice(0, eq) : env[i];
    if (k === key) return eq >= 0 ? env[i].slice(eq + 1) : '';
  }
  return undefined;
}

export function setEnv(s: StageState, key: string, value: string): void {
  const env = (s.config.Env ?? []).filter((e) => (e.includes('=') ? e.slice(0, e.indexOf('=')) : e) !== key);
  const idx = (s.config.Env ?? []).findIndex((e) => e.startsWith(key + '='));
  if (idx >= 0) env.splice(idx, 0, `${key}=${value}`); // keep its place, as Docker does
  else env.push(`${key}=${value}`);
  s.config.Env = env;
  s.args.delete(key); // a later ENV wins over an earlier ARG
}

/** Variables for expanding words: the stage's ARGs shadow its Env (the later declaration won already). */
export function lookupFor(s: StageState): EnvLookup {
  return (name) => (s.args.has(name) ? s.args.get(name) : getEnv(s, name));
}

/** The environment of a RUN: image Env plus the stage's ARGs with values (never recorded in the config). */
export function runEnv(s: StageState): string[] {
  const env = [...(s.config.Env ?? [])];
  for (const [k, v] of s.args) {
    if (v === undefined) continue;
    const i = env.findIndex((e) => e.startsWith(k + '='));
    if (i >= 0) env[i] = `${k}=${v}`;
    else env.push(`${k}=${v}`);
  }
  return env;
}
