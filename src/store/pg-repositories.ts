import type { StoreRepositories } from '../services/repositories.js';
import { getAccessKey } from './access-keys.js';
import { getAlias } from './aliases.js';
import { type Db, translatePgError } from './db.js';
import { getInstance } from './instances.js';
import { KeyBatchReads } from './key-batch-reads.js';
import { getKey } from './keys.js';
import { getVersion } from './versions.js';

/** The repositories over the pool; every pg error leaves translated (translatePgError). */
export function pgRepositories(db: Db): StoreRepositories {
  const keyReads = new KeyBatchReads(db);
  return {
    keys: { byId: (id) => translated(getKey(db, id)), withPrimaryVersion: (id) => translated(keyReads.read(id)) },
    versions: { byId: (id) => translated(getVersion(db, id)) },
    aliases: { byName: (name) => translated(getAlias(db, name)) },
    accessKeys: { byId: (id) => translated(getAccessKey(db, id)) },
    instances: { byId: (id) => translated(getInstance(db, id)) },
  };
}

function translated<T>(read: Promise<T>): Promise<T> {
  return read.catch((error: unknown) => Promise.reject(translatePgError(error)));
}
