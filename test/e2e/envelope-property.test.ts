import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 15, a property through the SDK transport on both tiers: for random plaintexts, random
 * contexts and random data-key sizes, Encrypt/Decrypt, GenerateDataKey/Decrypt and ReEncrypt
 * to the other tier all give back exactly what went in. Runs are kept small (30 per tier).
 */
let server: TestServer;
let call: CallApi;
const keys: Record<'HSM' | 'SOFTWARE', string> = { HSM: '', SOFTWARE: '' };

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  keys.HSM = (await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId })).KeyMetadata.KeyId;
  keys.SOFTWARE = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId;
});

afterAll(async () => {
  await server?.stop();
});

/** Any well-formed text (no lone surrogates: those are refused at the edge), 1..400 graphemes within 6 KiB. */
const plaintext = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 400 }).filter((s) => s.length > 0 && Buffer.byteLength(s) <= 6144);
/** A context of 0..5 string members, any text in names and values. */
const context = fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 20 }), fc.string({ unit: 'grapheme', maxLength: 40 }), { maxKeys: 5 });

describe.each(['HSM', 'SOFTWARE'] as const)('round trips on the %s tier', (tier) => {
  const other = tier === 'HSM' ? 'SOFTWARE' : 'HSM';

  it('Encrypt → ReEncrypt to the other tier → Decrypt, and GenerateDataKey → Decrypt, for random inputs', async () => {
    await fc.assert(
      fc.asyncProperty(plaintext, context, context, fc.integer({ min: 1, max: 1024 }), async (text, ctx, ctx2, bytes) => {
        const source = JSON.stringify(ctx);
        const destination = JSON.stringify(ctx2);
        const blob = (await call('Encrypt', { KeyId: keys[tier], Plaintext: text, EncryptionContext: source })).CiphertextBlob;
        // Member order does not matter (§5.8): decrypt with the members reversed.
        const reversed = JSON.stringify(Object.fromEntries(Object.entries(ctx).reverse()));
        expect((await call('Decrypt', { CiphertextBlob: blob, EncryptionContext: reversed })).Plaintext).toBe(text);

        const moved = await call('ReEncrypt', {
          CiphertextBlob: blob,
          SourceEncryptionContext: source,
          DestinationKeyId: keys[other],
          DestinationEncryptionContext: destination,
        });
        expect(moved.KeyId).toBe(keys[other]);
        expect((await call('Decrypt', { CiphertextBlob: moved.CiphertextBlob, EncryptionContext: destination })).Plaintext).toBe(text);

        const dk = await call('GenerateDataKey', { KeyId: keys[tier], NumberOfBytes: bytes, EncryptionContext: source });
        expect(Buffer.from(dk.Plaintext as string, 'base64').length).toBe(bytes);
        expect((await call('Decrypt', { CiphertextBlob: dk.CiphertextBlob, EncryptionContext: source })).Plaintext).toBe(dk.Plaintext);
      }),
      { numRuns: 30 },
    );
  });
});
