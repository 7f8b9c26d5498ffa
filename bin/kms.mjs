#!/usr/bin/env node
// The `kms` command (`npx kms …` in the repo; `npm run kms -- …` runs the sources directly).
//
// It runs the compiled CLI, dist/cli/kms.js (`npm run build`), while that build is current
// (bin/build-state.mjs: no file under src/ is newer than the build). Otherwise — no build yet,
// or src/ edited since — it runs the TypeScript sources through tsx: the same program, about
// 1.5 s slower per call (a terminal is told so; pipes are not, so scripts read the same output
// either way). A copy without src/ (the container image) always runs dist/.
// KMS_CLI_FROM_SOURCE=1 forces the sources.
import { buildState, packageRoot } from './build-state.mjs';

const state = buildState();
const forceSources = process.env.KMS_CLI_FROM_SOURCE === '1';

if (state.current && !forceSources) {
  await import(`${packageRoot}dist/cli/kms.js`);
} else if (state.hasSources) {
  if (!forceSources && process.stderr.isTTY) {
    const why = state.built ? 'src/ changed since the last build' : 'no build in dist/';
    process.stderr.write(`kms: ${why}; running the TypeScript sources (slower). \`npm run build\` for the compiled CLI.\n`);
  }
  const { register } = await import('tsx/esm/api');
  register();
  await import(`${packageRoot}src/cli/kms.ts`);
} else {
  process.stderr.write(`kms: ${packageRoot}dist/cli/kms.js is missing: run \`npm run build\` first.\n`);
  process.exitCode = 1;
}
