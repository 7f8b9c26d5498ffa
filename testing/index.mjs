// `hsm-kms/testing` (package.json "exports"): dist/testing/index.js, the compiled helper, when a
// build exists that is newer than src/testing/; otherwise the TypeScript sources through tsx (in
// this repo, before `npm run build`). The server it starts is `bin/kms.mjs quickstart`, which
// makes the same choice for the whole program.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function compiledIsCurrent() {
  try {
    const { startedAt } = JSON.parse(readFileSync(`${root}dist/build-stamp.json`, 'utf8'));
    statSync(`${root}dist/testing/index.js`);
    let sources;
    try {
      sources = readdirSync(`${root}src/testing`).map((name) => statSync(`${root}src/testing/${name}`).mtimeMs);
    } catch {
      return true; // a package without src/: dist is all there is
    }
    return typeof startedAt === 'number' && sources.every((mtime) => mtime < startedAt);
  } catch {
    return false;
  }
}

let testing;
if (compiledIsCurrent()) {
  testing = await import('../dist/testing/index.js');
} else {
  const { register } = await import('tsx/esm/api');
  try {
    register();
  } catch (error) {
    // Jest, for one, refuses loader hooks: there only the build can run.
    throw new Error(`hsm-kms/testing: dist/ holds no current build and this test runner cannot load TypeScript: run \`npm run build\` in hsm-kms first (${String(error?.message ?? error).split('\n')[0]})`);
  }
  testing = await import('../src/testing/index.ts');
}

export const { startTestKms } = testing;
