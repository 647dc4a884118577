/** One-line descriptions of registry and network failures (the error classes are in util/errors.ts). */
/** Describe a registry's JSON error body ({"errors":[{"code","message"}]}) in one line. */
export function describeErrorBody(text: string): string {
  try {
    const v = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
    if (Array.isArray(v.errors) && v.errors.length) {
      return v.errors
        .slice(0, 3)
        .map((e) => [e.code, e.message].filter((x) => typeof x === 'string' && x).join(': '))
        .filter(Boolean)
        .join('; ');
    }
  } catch {
    /* not JSON */
  }
  return text.replace(/\s+/g, ' ').trim().slice(0, 200);
}

/** One line for a network error: its code and message, no URL credentials. */
export function describeNetworkError(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { cause?: unknown };
  const inner = (e?.cause ?? undefined) as (NodeJS.ErrnoException | undefined);
  const code = inner?.code ?? e?.code;
  const msg = inner?.message ?? e?.message ?? String(err);
  return code && !msg.includes(code) ? `${code}: ${msg}` : msg;
}
