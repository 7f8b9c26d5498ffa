import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MetadataChange } from '../../src/services/repositories.js';
import { getAccessKey, insertAccessKey, setAccessKeyStatus } from '../../src/store/access-keys.js';
import { setChangeSink } from '../../src/store/change-tracking.js';
import { type Db, createDb, withTransaction } from '../../src/store/db.js';
import { createTestDatabase } from '../helpers/database.js';

/**
 * Issue 16: the store tells the caches what a write changed only once it is committed (real
 * Postgres): inside a transaction the changes wait for COMMIT, a rolled-back transaction
 * tells nothing, a write outside a transaction tells at once. What the sink is told, a fresh
 * read on another connection already sees.
 */
let db: Db;
const told: Array<{ changes: readonly MetadataChange[]; statusSeenByOthers: Promise<string | undefined> }> = [];

beforeAll(async () => {
  db = createDb(await createTestDatabase(), 4);
  setChangeSink(db, (changes) => {
    const accessKey = changes.find((c) => c.kind === 'accessKey');
    told.push({ changes, statusSeenByOthers: accessKey && 'id' in accessKey ? getAccessKey(db, accessKey.id).then((a) => a?.status) : Promise.resolve(undefined) });
  });
});

afterAll(async () => {
  await db?.end();
});

const newAccessKey = async () => {
  const id = `LTAI${randomBytes(10).toString('hex')}`;
  await insertAccessKey(db, { id, sealedSecret: randomBytes(32), role: 'key-user', instanceIds: null, description: '' });
  return id;
};

describe('change tracking', () => {
  it('a write outside a transaction is told at once', async () => {
    told.length = 0;
    const id = await newAccessKey();
    expect(told.map((t) => t.changes)).toEqual([[{ kind: 'accessKey', id }]]);
  });

  it('inside a transaction, the change is told after COMMIT, and others see it by then', async () => {
    const id = await newAccessKey();
    told.length = 0;
    await withTransaction(db, async (tx) => {
      await setAccessKeyStatus(tx, id, 'Disabled');
      expect(told).toEqual([]);
    });
    expect(told.map((t) => t.changes)).toEqual([[{ kind: 'accessKey', id }]]);
    expect(await told[0]!.statusSeenByOthers).toBe('Disabled');
  });

  it('a rolled-back transaction tells nothing', async () => {
    const id = await newAccessKey();
    told.length = 0;
    await expect(
      withTransaction(db, async (tx) => {
        await setAccessKeyStatus(tx, id, 'Disabled');
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    expect(told).toEqual([]);
    expect((await getAccessKey(db, id))?.status).toBe('Enabled');
  });
});
