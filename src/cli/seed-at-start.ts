import type { ServiceDeps } from '../services/context.js';

/**
 * KMS_SEED_FILE at quickstart start: the seed is applied once the default instances exist; its
 * report goes to stderr, and a conflict or failure stops the start (a test rig that is not in
 * the declared state should not pretend to be).
 * @returns the one-line summary for the quickstart's step line.
 */
export async function applySeedAtStart(deps: ServiceDeps, file: string): Promise<string> {
  const [{ applySeedFile }, { seedApplied }, { formatSeedReport }] = await Promise.all([
    import('../services/seed-file.js'),
    import('../domain/seed.js'),
    import('./seed-report.js'),
  ]);
  const outcomes = await applySeedFile(deps, file);
  const report = formatSeedReport(outcomes);
  if (!seedApplied(outcomes)) throw new Error(`KMS_SEED_FILE ${file} could not be applied:\n${report}`);
  const summary = report.trimEnd().split('\n').at(-1) ?? '';
  return `${file}: ${summary.replace(/^seed: /, '')}`;
}
