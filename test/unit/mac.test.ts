import { describe, expect, it } from 'vitest';
import { KmsError } from '../../src/domain/errors.js';
import { MAC_SPECS, keyShape } from '../../src/domain/key-spec.js';
import { MAC_ALGORITHMS, MAX_MAC_MESSAGE_BYTES, MAX_MAC_MESSAGE_CHARS, assertMacAlgorithm, decodeMac, decodeMacMessage, macBytes } from '../../src/domain/mac.js';

function code(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (error) {
    return error instanceof KmsError ? `${error.code}: ${error.message}` : String(error);
  }
}

describe('MAC keys: a spec fixes its algorithm (domain/mac.ts)', () => {
  // Spec × algorithm, cell by cell: only the diagonal is allowed.
  for (const [i, spec] of MAC_SPECS.entries()) {
    for (const [j, algorithm] of MAC_ALGORITHMS.entries()) {
      it(`${spec} with ${algorithm}: ${i === j ? 'allowed' : 'InvalidParameter'}`, () => {
        const outcome = code(() => assertMacAlgorithm(keyShape(spec), spec, algorithm));
        if (i === j) expect(outcome).toBe('ok');
        else expect(outcome).toMatch(new RegExp(`^InvalidParameter: .*${spec} key computes ${MAC_ALGORITHMS[i]} only`));
      });
    }
    it(`${spec} with HMAC_SM3: refused with the reason`, () => {
      expect(code(() => assertMacAlgorithm(keyShape(spec), spec, 'HMAC_SM3'))).toMatch(/^InvalidParameter: .*HMAC_SM3 is not supported/);
    });
  }

  it('non-MAC shapes compute no MAC', () => {
    expect(code(() => assertMacAlgorithm(keyShape('Aliyun_AES_256'), 'Aliyun_AES_256', 'HMAC_SHA_256'))).toMatch(/^InvalidParameter/);
  });

  it('MAC lengths are the hash outputs', () => {
    expect(MAC_ALGORITHMS.map(macBytes)).toEqual([28, 32, 48, 64]);
  });

  it('Message: strict base64 of 1..4096 bytes; the schema bound holds exactly the largest', () => {
    expect(decodeMacMessage(Buffer.alloc(MAX_MAC_MESSAGE_BYTES, 1).toString('base64'))).toHaveLength(4096);
    expect(Buffer.alloc(MAX_MAC_MESSAGE_BYTES).toString('base64')).toHaveLength(MAX_MAC_MESSAGE_CHARS);
    for (const bad of [Buffer.alloc(4097).toString('base64'), '', 'a', 'not base64!']) expect(code(() => decodeMacMessage(bad))).toMatch(/^InvalidParameter: .*Message/);
  });

  it('Mac: strict base64 of at most 64 bytes (any shorter length simply does not verify)', () => {
    expect(decodeMac(Buffer.alloc(64).toString('base64'))).toHaveLength(64);
    expect(decodeMac(Buffer.alloc(3).toString('base64'))).toHaveLength(3);
    expect(code(() => decodeMac(Buffer.alloc(65).toString('base64')))).toMatch(/^InvalidParameter: .*Mac/);
    expect(code(() => decodeMac('%%%%'))).toMatch(/^InvalidParameter/);
  });
});
