/**
 * `inspect --format`: the part of Go's text/template docker users write — `{{.A.B}}`,
 * `{{json .X}}`, `{{index .Config.Labels "k"}}`, `{{join .RepoTags ","}}`, `{{range .X}}…{{.}}…{{end}}`,
 * `{{if .X}}…{{else}}…{{end}}`, `{{upper}}`/`{{lower}}`/`{{len}}`. Values print as Go prints them
 * ([a b], map[k:v], <no value>); anything else is refused with the template named.
 */
import { UsageError } from '../../util/errors.js';

type Node = { text: string } | { expr: string } | { range: string; body: Node[]; else?: Node[] } | { if: string; body: Node[]; else?: Node[] };

function tokenize(t: string): ({ text: string } | { action: string })[] {
  const out: ({ text: string } | { action: string })[] = [];
  let i = 0;
  while (i < t.length) {
    const open = t.indexOf('{{', i);
    if (open < 0) {
      out.push({ text: t.slice(i) });
      break;
    }
    if (open > i) out.push({ text: t.slice(i, open) });
    const close = t.indexOf('}}', open);
    if (close < 0) throw new UsageError(`--format ${t}: unclosed {{`);
    out.push({ action: t.slice(open + 2, close).replace(/^-\s*|\s*-$/g, '').trim() });
    i = close + 2;
  }
  return out;
}

function parse(tokens: ReturnType<typeof tokenize>, pos: { i: number }, template: string): { nodes: Node[]; end?: string } {
  const nodes: Node[] = [];
  while (pos.i < tokens.length) {
    const tok = tokens[pos.i++];
    if ('text' in tok) {
      nodes.push(tok);
      continue;
    }
    const a = tok.action;
    if (a === 'end' || a === 'else') return { nodes, end: a };
    const block = /^(range|if)\s+(.+)$/.exec(a);
    if (block) {
      const body = parse(tokens, pos, template);
      let alt: Node[] | undefined;
      if (body.end === 'else') {
        const e = parse(tokens, pos, template);
        if (e.end !== 'end') throw new UsageError(`--format ${template}: {{${block[1]}}} without {{end}}`);
        alt = e.nodes;
      } else if (body.end !== 'end') throw new UsageError(`--format ${template}: {{${block[1]}}} without {{end}}`);
      nodes.push(block[1] === 'range' ? { range: block[2], body: body.nodes, else: alt } : { if: block[2], body: body.nodes, else: alt });
      continue;
    }
    nodes.push({ expr: a });
  }
  return { nodes };
}

function args(s: string): string[] {
  return s.match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? [];
}

function lookup(dot: unknown, path: string, template: string): unknown {
  if (path === '.') return dot;
  if (!path.startsWith('.')) throw new UsageError(`--format ${template}: cannot evaluate "${path}"`);
  let v: unknown = dot;
  for (const part of path.slice(1).split('.')) {
    if (v === null || v === undefined || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

function value(dot: unknown, word: string, template: string): unknown {
  if (word.startsWith('"')) return JSON.parse(word);
  if (/^-?\d+$/.test(word)) return Number(word);
  return lookup(dot, word, template);
}

function evalExpr(dot: unknown, expr: string, template: string): unknown {
  const w = args(expr);
  const fn = w[0];
  switch (fn) {
    case 'json':
      return JSON.stringify(value(dot, w[1] ?? '.', template) ?? null);
    case 'index': {
      let v = value(dot, w[1], template);
      for (const k of w.slice(2)) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[String(value(dot, k, template))] : undefined;
      return v;
    }
    case 'join': {
      const v = value(dot, w[1], template);
      return Array.isArray(v) ? v.map((x) => goString(x)).join(String(value(dot, w[2] ?? '""', template))) : '';
    }
    case 'upper':
    case 'lower': {
      const s = goString(value(dot, w[1] ?? '.', template));
      return fn === 'upper' ? s.toUpperCase() : s.toLowerCase();
    }
    case 'len': {
      const v = value(dot, w[1] ?? '.', template);
      return Array.isArray(v) ? v.length : v && typeof v === 'object' ? Object.keys(v).length : typeof v === 'string' ? v.length : 0;
    }
    case 'println':
      return w.slice(1).map((x) => goString(value(dot, x, template))).join(' ') + '\n';
  }
  if (w.length !== 1) throw new UsageError(`--format ${template}: "${fn}" is not a function mbuild knows (json, index, join, upper, lower, len, println)`);
  return value(dot, fn, template);
}

/** Go's fmt %v: [a b], map[k:v] (keys sorted), <no value> for a missing key. */
export function goString(v: unknown): string {
  if (v === undefined) return '<no value>';
  if (v === null) return '<nil>';
  if (Array.isArray(v)) return `[${v.map(goString).join(' ')}]`;
  if (typeof v === 'object') {
    const keys = Object.keys(v as object).sort();
    return `map[${keys.map((k) => `${k}:${goString((v as Record<string, unknown>)[k])}`).join(' ')}]`;
  }
  return String(v);
}

function truthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (v && typeof v === 'object') return Object.keys(v).length > 0;
  return Boolean(v);
}

function run(nodes: Node[], dot: unknown, template: string): string {
  let out = '';
  for (const n of nodes) {
    if ('text' in n) out += n.text;
    else if ('expr' in n) {
      const v = evalExpr(dot, n.expr, template);
      out += typeof v === 'string' ? v : goString(v);
    } else if ('range' in n) {
      const v = evalExpr(dot, n.range, template);
      const items = Array.isArray(v) ? v : v && typeof v === 'object' ? Object.keys(v).sort().map((k) => (v as Record<string, unknown>)[k]) : [];
      if (!items.length && n.else) out += run(n.else, dot, template);
      for (const item of items) out += run(n.body, item, template);
    } else {
      out += truthy(evalExpr(dot, n.if, template)) ? run(n.body, dot, template) : n.else ? run(n.else, dot, template) : '';
    }
  }
  return out;
}

export function renderTemplate(template: string, data: unknown): string {
  const parsed = parse(tokenize(template), { i: 0 }, template);
  if (parsed.end) throw new UsageError(`--format ${template}: {{${parsed.end}}} without {{range}} or {{if}}`);
  return run(parsed.nodes, data, template);
}
