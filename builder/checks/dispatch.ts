/**
 * The checks BuildKit makes while dispatching a stage's instructions (dockerfile2llb convert.go,
 * convert_expose.go, validations.go): UndefinedVar, LegacyKeyValueFormat, SecretsUsedInArgOrEnv,
 * WorkdirRelativePath, JSONArgsRecommended, MultipleInstructionsDisallowed, CopyIgnoredFile and
 * the EXPOSE rules, over a simulated environment (ENV, ARG and what the base gives). It also
 * refuses what the build itself would refuse before running a step: expansion errors, COPY/ADD
 * sources and flags (builder/steps/copy-checks.ts), blank ENV names, empty VOLUMEs, RUN --mount
 * options, --from names that are no stage and no valid image reference, RUN --security=insecure
 * without the entitlement.
 */
import path from 'node:path';
import type { Instruction } from '../dockerfile/types.js';
import { parsePortSpec, PortSpecError } from '../dockerfile/expose.js';
import { parseRunMount } from '../dockerfile/run-mount.js';
import { Lexer, type EnvLookup } from '../expand/shell-word.js';
import { MESSAGES, type RuleName } from './rules.js';
import type { CheckConfig } from './config.js';
import { suggest } from '../../util/suggest.js';
import { checkCopySources } from '../steps/copy-checks.js';

/** Args BuildKit never puts in the environment. */
export const NON_ENV_ARGS = new Set(['BUILDKIT_SBOM_SCAN_CONTEXT', 'BUILDKIT_SBOM_SCAN_STAGE']);

const SECRET_DENY = /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const SECRET_ALLOW = /(?:_|^)(?:public|file|version)(?:_|$)/i;

/** An ordered environment (BuildKit's EnvList: keys in the order they were first set). */
export class Env {
  private readonly map = new Map<string, string>();
  constructor(entries: Iterable<[string, string]> = []) {
    for (const [k, v] of entries) this.set(k, v);
  }
  static fromList(list: string[]): Env {
    return new Env(list.map((e) => {
      const i = e.indexOf('=');
      return i < 0 ? [e, ''] : [e.slice(0, i), e.slice(i + 1)];
    }));
  }
  set(k: string, v: string): void {
    this.map.set(k, v);
  }
  get lookup(): EnvLookup {
    return (k) => this.map.get(k);
  }
  keys(): string[] {
    return [...this.map.keys()];
  }
  clone(): Env {
    return new Env(this.map);
  }
}

/** What a stage carries from instruction to instruction (and to stages built on it). */
export interface StageState {
  env: Env;
  /** false when the base image's environment is unknown: UndefinedVar cannot be judged */
  envKnown: boolean;
  shell: boolean;
  workdirSet: boolean;
}

/** What the dispatch walk needs from the file-level pass; instructions are named by their index. */
export interface DispatchContext {
  warn(cfg: CheckConfig, rule: RuleName, message: string, start: number, end: number): void;
  /** the check config for instruction i (its `# check=` comment merged in) */
  config(i: number): CheckConfig;
  /** the keyword as written */
  keyword(i: number): string;
  /** the AST words (ENV/LABEL come as key, value, "=" or "" triples) */
  args(i: number): string[];
  lex: Lexer;
  buildArgs: Record<string, string>;
  globals: Env;
  ignore?: { excludes(rel: string): boolean; patterns: { text: string; exclusion: boolean }[] };
  /** a --from value (COPY, RUN --mount) that names no stage: an error when it is no image reference either */
  checkImageRef?(from: string): void;
  /** --allow, when the check should refuse what needs an entitlement (undefined: not judged) */
  allow?: string[];
}

/** An error with the instruction's lines, unless it has some already. */
export function withRange(e: unknown, range: { start: number; end: number }): Error {
  const err = e instanceof Error ? e : new Error(String(e));
  (err as Error & { range?: unknown }).range ??= range;
  return err;
}

export function dispatchStage(cx: DispatchContext, st: StageState, list: Instruction[], offset: number): void {
  const declared = new Set<string>();
  const once = new Map<string, { start: number; end: number }>();
  list.forEach((ins, j) => {
    const cfg = cx.config(offset + j);
    const { start, end } = ins.range;
    const at = (e: unknown) => withRange(e, ins.range);
    // a word that reads a variable the unknown base environment may hold: its value is not known
    let uncertain = false;
    const expand = (word: string, lexer = cx.lex) => {
      let r;
      try {
        r = lexer.process(word, st.env.lookup);
      } catch (e) {
        throw at(e);
      }
      reportUnmatched(r.unmatched);
      if (!st.envKnown && r.unmatched.size) uncertain = true;
      return r.result;
    };
    const reportUnmatched = (unmatched: Set<string>) => {
      if (!st.envKnown) return;
      for (const v of unmatched) {
        if (declared.has(v) || NON_ENV_ARGS.has(v)) continue;
        cx.warn(cfg, 'UndefinedVar', MESSAGES.UndefinedVar(v, suggest(v, st.env.keys(), true)), start, end);
      }
    };
    // the earlier one is reported: it is the one that has no effect
    const usedOnce = (kind: string, written: string) => {
      const prev = once.get(kind);
      if (prev) cx.warn(cfg, 'MultipleInstructionsDisallowed', MESSAGES.MultipleInstructionsDisallowed(written), prev.start, prev.end);
      once.set(kind, { start, end });
    };
    const legacy = (cmd: string) => {
      const args = cx.args(offset + j);
      for (let k = 2; k < args.length; k += 3) if (args[k] === '') cx.warn(cfg, 'LegacyKeyValueFormat', MESSAGES.LegacyKeyValueFormat(cmd), start, end);
    };
    const secret = (instruction: string, key: string) => {
      if (SECRET_DENY.test(key) && !SECRET_ALLOW.test(key)) cx.warn(cfg, 'SecretsUsedInArgOrEnv', MESSAGES.SecretsUsedInArgOrEnv(instruction, key), start, end);
    };
    const name = cx.keyword(offset + j);

    switch (ins.kind) {
      case 'env': {
        const pairs = ins.pairs.map((p) => ({ key: expand(p.key), value: expand(p.value) }));
        if (!uncertain && pairs.some((p) => p.key === '')) throw at(new Error('ENV names can not be blank'));
        legacy(name);
        for (const p of pairs) {
          secret('ENV', p.key);
          st.env.set(p.key, p.value);
        }
        break;
      }
      case 'label':
        for (const p of ins.pairs) {
          expand(p.key);
          expand(p.value);
        }
        legacy(name);
        break;
      case 'arg':
        for (const a of ins.args) {
          secret('ARG', a.name);
          let value: string | undefined;
          if (a.name in cx.buildArgs) value = cx.buildArgs[a.name];
          else if (a.default !== undefined) value = expand(a.default);
          else value = cx.globals.lookup(a.name);
          if (value !== undefined && !NON_ENV_ARGS.has(a.name)) st.env.set(a.name, value);
          declared.add(a.name);
        }
        break;
      case 'copy':
      case 'add': {
        if (ins.chown !== undefined) expand(ins.chown);
        const chmod = ins.chmod !== undefined ? expand(ins.chmod) : undefined;
        if (ins.checksum !== undefined) expand(ins.checksum);
        const sources = ins.sources.map((s) => expand(s));
        const dest = expand(ins.dest);
        try {
          if (!uncertain) checkCopySources(ins, sources, dest, chmod);
          if (ins.from !== undefined) cx.checkImageRef?.(ins.from);
        } catch (e) {
          throw at(e);
        }
        for (const h of ins.sourceContents ?? []) {
          if (!h.expand) continue;
          try {
            reportUnmatched(new Lexer('\\', { skipProcessQuotes: true }).process(h.data, st.env.lookup).unmatched);
          } catch (e) {
            throw at(e);
          }
        }
        if (ins.from === undefined) copyIgnored(cx, cfg, ins.kind === 'add' ? 'Add' : 'Copy', sources, start, end);
        break;
      }
      case 'workdir': {
        const p = expand(ins.path);
        if (!st.workdirSet && !p.startsWith('/')) cx.warn(cfg, 'WorkdirRelativePath', MESSAGES.WorkdirRelativePath(p), start, end);
        st.workdirSet = true;
        break;
      }
      case 'user':
        expand(ins.user);
        break;
      case 'volume':
        for (const v of ins.paths) if (expand(v) === '' && !uncertain) throw at(new Error('VOLUME specified can not be an empty string'));
        break;
      case 'stopsignal':
        expand(ins.signal);
        break;
      case 'run':
        // the mount options as the build reads them: values expanded (UndefinedVar), errors refused
        for (const m of ins.mounts) {
          const spec = parseRunMount(m, (w) => expand(w), ins.range);
          if (spec.from !== undefined) {
            try {
              cx.checkImageRef?.(spec.from);
            } catch (e) {
              throw at(e);
            }
          }
        }
        if (ins.security === 'insecure' && cx.allow && !cx.allow.includes('security.insecure'))
          throw at(new Error('RUN --security=insecure needs the security.insecure entitlement: build with --allow security.insecure'));
        break;
      case 'cmd':
      case 'entrypoint':
        usedOnce(ins.kind, name);
        if (ins.cmd.shell && !st.shell) cx.warn(cfg, 'JSONArgsRecommended', MESSAGES.JSONArgsRecommended(name), start, end);
        break;
      case 'healthcheck':
        usedOnce(ins.kind, name);
        break;
      case 'shell':
        st.shell = true;
        break;
      case 'expose': {
        let words: string[];
        try {
          words = ins.ports.flatMap((w) => cx.lex.processWords(w, st.env.lookup));
        } catch (e) {
          throw at(e);
        }
        for (const w of words) {
          let spec;
          try {
            spec = parsePortSpec(w);
          } catch (e) {
            if (e instanceof PortSpecError) throw at(e);
            throw e;
          }
          if (spec.proto !== spec.proto.toLowerCase()) cx.warn(cfg, 'ExposeProtoCasing', MESSAGES.ExposeProtoCasing(w), start, end);
          if (spec.ip !== '' || spec.hostPort !== '') cx.warn(cfg, 'ExposeInvalidFormat', MESSAGES.ExposeInvalidFormat(w), start, end);
        }
        break;
      }
      default:
        break;
    }
  });
}

function copyIgnored(cx: DispatchContext, cfg: CheckConfig, cmd: string, sources: string[], start: number, end: number): void {
  const ig = cx.ignore;
  if (!ig || ig.patterns.length === 0 || ig.patterns.some((p) => p.exclusion)) return;
  for (const raw of sources) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) continue; // ADD <url>
    const src = path.posix.normalize(raw).replace(/(.)\/+$/, '$1');
    if (src === '.' || src === '/') {
      const all = ig.patterns.some((p) => !p.exclusion && ['*', '**', '**/*'].includes(p.text));
      if (!all) continue;
    }
    const rel = src.replace(/^\/+/, '').replace(/^\.\//, '');
    if (rel === '' ? true : ig.excludes(rel)) cx.warn(cfg, 'CopyIgnoredFile', MESSAGES.CopyIgnoredFile(cmd, src), start, end);
  }
}
