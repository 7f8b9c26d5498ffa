// Whether dist/ (`npm run build`) is current: dist/build-stamp.json records when the build
// started, and no file or folder under src/ may be newer. Shared by bin/kms.mjs (which runs
// dist/ only while it is current) and scripts/build.mjs --if-stale. No dependencies: it runs on
// every `kms` call.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The package root (the folder holding bin/, src/ and dist/). */
export const packageRoot = fileURLToPath(new URL('..', import.meta.url));

/** When the build that produced dist/ started (ms), or undefined without a finished build. */
function buildStartedAt(root) {
  try {
    const stamp = JSON.parse(readFileSync(`${root}dist/build-stamp.json`, 'utf8'));
    return typeof stamp.startedAt === 'number' ? stamp.startedAt : undefined;
  } catch {
    return undefined;
  }
}

/** The newest mtime of a folder, its files and sub-folders (a deleted file changes its folder's). */
function newestMtime(dir) {
  let newest = statSync(dir).mtimeMs;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const entryPath = `${dir}/${entry.name}`;
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(entryPath) : statSync(entryPath).mtimeMs);
  }
  return newest;
}

function isDirectory(dir) {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/**
 * @returns {{ hasSources: boolean, built: boolean, current: boolean }} `built`: dist/ has a
 *   finished build; `current`: built and no source is newer (always, without src/).
 */
export function buildState(root = packageRoot) {
  const startedAt = buildStartedAt(root);
  const hasSources = isDirectory(`${root}src`);
  const built = startedAt !== undefined;
  return { hasSources, built, current: built && (!hasSources || newestMtime(`${root}src`) < startedAt) };
}
