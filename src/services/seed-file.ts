import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'yaml';
import { type SeedDocument, SeedFileError, type SeedOutcome, parseSeedDocument } from '../domain/seed.js';
import type { ServiceDeps } from './context.js';
import { type ApplySeedOptions, applySeed } from './seed.js';

/**
 * Reads a seed file (YAML, or JSON, which is YAML too) and validates it; `material.file`
 * entries are read later, relative to the seed file's folder, when the key needs them.
 * @throws SeedFileError for a file that does not parse or does not validate; Error when unreadable.
 */
export async function loadSeedFile(file: string): Promise<{ document: SeedDocument; options: ApplySeedOptions }> {
  const text = await readFile(file, 'utf8');
  let decoded: unknown;
  try {
    decoded = parse(text);
  } catch (error) {
    throw new SeedFileError([`(file): not YAML or JSON: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`]);
  }
  const folder = path.dirname(path.resolve(file));
  return {
    document: parseSeedDocument(decoded),
    options: { readMaterialFile: (name) => readFile(path.resolve(folder, name)) },
  };
}

/** `kms seed FILE` and KMS_SEED_FILE: loads, validates and applies a seed file. */
export async function applySeedFile(deps: ServiceDeps, file: string): Promise<SeedOutcome[]> {
  const { document, options } = await loadSeedFile(file);
  try {
    return await applySeed(deps, document, options);
  } finally {
    for (const key of document.keys) if (key.material?.kind === 'base64') key.material.bytes.fill(0);
  }
}
