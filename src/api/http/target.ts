/** The path and the raw query of a request target (`/?a=1`, or absolute-form `http://host/?a=1`); undefined for `*`. */
export function splitTarget(target: string): { path: string; rawQuery: string } | undefined {
  const query = target.indexOf('?');
  const rawQuery = query === -1 ? '' : target.slice(query + 1);
  if (target.charCodeAt(0) === 47 /* / */) return { path: query === -1 ? target : target.slice(0, query), rawQuery };
  try {
    return { path: new URL(target).pathname, rawQuery };
  } catch {
    return undefined;
  }
}

/** The routed path of a request target: its path without the query, a trailing slash dropped (`/health/`). */
export function pathOf(target: string): string | undefined {
  const path = splitTarget(target)?.path;
  return path !== undefined && path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}
