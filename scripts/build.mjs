#!/usr/bin/env node
// `npm run build`: compiles src/ to dist/ with tsc (tsconfig.build.json, incremental), copies
// the assets that are not TypeScript (the SQL migrations …) next to the compiled modules, and
// writes dist/build-stamp.json with the time the build started. bin/kms.mjs runs dist/ only
// while no file under src/ is newer than that (bin/build-state.mjs).
// `--if-stale`: do nothing when dist/ is current (the quickstart's first-run build).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildState } from '../bin/build-state.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'src');
const dist = path.join(root, 'dist');
if (process.argv.includes('--if-stale') && buildState(`${root}/`).current) process.exit(0);

// Files edited after this instant are newer than the build, even if tsc read them.
const startedAt = Date.now();

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const compiled = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
let assets = 0;
(function copyAssets(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const from = path.join(dir, entry.name);
    if (entry.isDirectory()) copyAssets(from);
    else if (!entry.name.endsWith('.ts')) {
      const to = path.join(dist, path.relative(src, from));
      mkdirSync(path.dirname(to), { recursive: true });
      copyFileSync(from, to);
      assets++;
    }
  }
})(src);

if (compiled.status !== 0) {
  process.stderr.write('build: tsc failed; dist/ was not stamped\n');
  process.exit(compiled.status ?? 1);
}

const stamp = path.join(dist, 'build-stamp.json');
writeFileSync(`${stamp}.tmp`, `${JSON.stringify({ startedAt, finishedAt: Date.now() })}\n`);
renameSync(`${stamp}.tmp`, stamp);
process.stderr.write(`build: dist/ ready (${assets} assets copied, ${((Date.now() - startedAt) / 1000).toFixed(1)} s)\n`);
