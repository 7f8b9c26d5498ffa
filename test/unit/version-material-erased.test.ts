import { describe, expect, it } from 'vitest';
import { KmsError } from '../../src/domain/errors.js';
import type { KeyVersion } from '../../src/domain/key-version.js';
import { wrappedKeyOf } from '../../src/services/version-material.js';

/**
 * Found by the multi-node soak (issue 19): an Encrypt on an HsmEncryptedDatabase key whose
 * material a worker had just expired (the node's cached key state still Enabled) read the
 * version without its wrapped material and answered 500. Erased meanwhile is a retryable 503.
 */
describe('a wrapped version whose material was erased', () => {
  it('is ServiceUnavailableTemporary (retry: the key state answers next), not InternalFailure', () => {
    const erased = { id: '0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9', storage: 'wrapped', wrappedMaterial: null } as unknown as KeyVersion;
    const failure = (() => {
      try {
        wrappedKeyOf(erased);
        return undefined;
      } catch (error) {
        return error;
      }
    })();
    expect(failure).toBeInstanceOf(KmsError);
    expect({ code: (failure as KmsError).code, kind: (failure as KmsError).kind }).toEqual({ code: 'ServiceUnavailableTemporary', kind: 'unavailable' });
  });
});
