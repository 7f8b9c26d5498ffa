import { describe, expect, it } from 'vitest';
import { KmsError } from '../../src/domain/errors.js';
import {
  allowedKeySpecs,
  assertAllowed,
  canCreateKeyVersion,
  canRotateAutomatically,
  defaultKeyUsage,
  KEY_ACTIONS,
  KEY_SPECS,
  KEY_STATES,
  materialLength,
  stateAfter,
  type KeyAction,
  type KeyEvent,
  type KeyState,
  type RotationEligibility,
} from '../../src/domain/key.js';

const OK = 'Success';
const D = 'Rejected.Disabled';
const PD = 'Rejected.PendingDeletion';
const PI = 'Rejected.PendingImport';
const SMF = 'Rejected.StateModifiedFailed';

/** alibaba-api.md §5.1, columns Enabled | Disabled | PendingDeletion | PendingImport. */
const EXPECTED: Record<KeyAction, [string, string, string, string]> = {
  Encrypt: [OK, D, PD, PI],
  Decrypt: [OK, D, PD, PI],
  GenerateDataKey: [OK, D, PD, PI],
  GenerateDataKeyWithoutPlaintext: [OK, D, PD, PI],
  CreateKeyVersion: [OK, D, PD, PI],
  UpdateRotationPolicy: [OK, D, PD, PI],
  UpdateKeyDescription: [OK, OK, PD, OK],
  SetKeyPolicy: [OK, OK, PD, OK],
  TagResource: [OK, OK, PD, OK],
  UntagResource: [OK, OK, PD, OK],
  EnableKey: [OK, OK, SMF, SMF],
  DisableKey: [OK, OK, SMF, SMF],
  ScheduleKeyDeletion: [OK, OK, SMF, OK],
  CancelKeyDeletion: [SMF, SMF, OK, SMF],
  CreateAlias: [OK, OK, SMF, OK],
  UpdateAlias: [OK, OK, SMF, OK],
  DeleteAlias: [OK, OK, OK, OK],
  SetDeletionProtection: [OK, OK, PD, OK],
  GetParametersForImport: [OK, OK, PD, OK],
  ImportKeyMaterial: [OK, OK, PD, OK],
  DeleteKeyMaterial: [OK, OK, OK, OK],
  DescribeKey: [OK, OK, OK, OK],
  ListKeyVersions: [OK, OK, OK, OK],
  DescribeKeyVersion: [OK, OK, OK, OK],
  ListResourceTags: [OK, OK, OK, OK],
  ListAliasesByKeyId: [OK, OK, OK, OK],
  GetKeyPolicy: [OK, OK, OK, OK],
};

function outcome(action: KeyAction, state: KeyState): string {
  try {
    assertAllowed(action, state);
    return OK;
  } catch (e) {
    if (!(e instanceof KmsError)) throw e;
    expect(e.kind).toBe('client');
    return e.code;
  }
}

describe('assertAllowed: every state × action (alibaba-api.md §5.1)', () => {
  it('the table covers every action', () => {
    expect(Object.keys(EXPECTED).sort()).toEqual([...KEY_ACTIONS].sort());
  });

  const pairs = KEY_ACTIONS.flatMap((action) =>
    KEY_STATES.map((state, col) => [action, state, EXPECTED[action][col] ?? '?'] as const),
  );
  it.each(pairs)('%s in %s → %s', (action, state, expected) => {
    expect(outcome(action, state)).toBe(expected);
  });

  it('uses Alibaba messages', () => {
    expect(() => assertAllowed('Encrypt', 'Disabled')).toThrow(
      'The request was rejected because the key state is Disabled.',
    );
    expect(() => assertAllowed('EnableKey', 'PendingImport')).toThrow('Keystate modified failed.');
  });
});

describe('stateAfter', () => {
  const withMaterial = (state: KeyState) => ({ state, hasMaterial: true });
  const noMaterial = (state: KeyState) => ({ state, hasMaterial: false });
  const cases: Array<[KeyEvent, { state: KeyState; hasMaterial: boolean }, KeyState | string]> = [
    ['EnableKey', withMaterial('Disabled'), 'Enabled'],
    ['EnableKey', withMaterial('Enabled'), 'Enabled'],
    ['EnableKey', noMaterial('PendingImport'), SMF],
    ['DisableKey', withMaterial('Enabled'), 'Disabled'],
    ['DisableKey', withMaterial('Disabled'), 'Disabled'],
    ['DisableKey', withMaterial('PendingDeletion'), SMF],
    ['ScheduleKeyDeletion', withMaterial('Enabled'), 'PendingDeletion'],
    ['ScheduleKeyDeletion', withMaterial('Disabled'), 'PendingDeletion'],
    ['ScheduleKeyDeletion', noMaterial('PendingImport'), 'PendingDeletion'],
    ['ScheduleKeyDeletion', withMaterial('PendingDeletion'), SMF],
    ['CancelKeyDeletion', withMaterial('PendingDeletion'), 'Enabled'],
    ['CancelKeyDeletion', noMaterial('PendingDeletion'), 'PendingImport'],
    ['CancelKeyDeletion', withMaterial('Enabled'), SMF],
    ['ImportKeyMaterial', noMaterial('PendingImport'), 'Enabled'],
    ['ImportKeyMaterial', withMaterial('Enabled'), 'Enabled'],
    ['ImportKeyMaterial', withMaterial('Disabled'), 'Disabled'],
    ['ImportKeyMaterial', noMaterial('PendingDeletion'), PD],
    ['DeleteKeyMaterial', withMaterial('Enabled'), 'PendingImport'],
    ['DeleteKeyMaterial', withMaterial('Disabled'), 'PendingImport'],
    ['DeleteKeyMaterial', noMaterial('PendingImport'), 'PendingImport'],
    ['DeleteKeyMaterial', withMaterial('PendingDeletion'), 'PendingDeletion'],
    ['ExpireKeyMaterial', withMaterial('Enabled'), 'PendingImport'],
    ['ExpireKeyMaterial', withMaterial('Disabled'), 'PendingImport'],
    ['ExpireKeyMaterial', withMaterial('PendingDeletion'), 'PendingDeletion'],
    ['Encrypt', withMaterial('Enabled'), 'Enabled'],
    ['Encrypt', withMaterial('Disabled'), D],
    ['UpdateKeyDescription', noMaterial('PendingImport'), 'PendingImport'],
    ['DescribeKey', withMaterial('PendingDeletion'), 'PendingDeletion'],
  ];
  it.each(cases)('%s from %o → %s', (event, key, expected) => {
    let result: string;
    try {
      result = stateAfter(event, key);
    } catch (e) {
      if (!(e instanceof KmsError)) throw e;
      result = e.code;
    }
    expect(result).toBe(expected);
  });
});

describe('specs, usage and material', () => {
  it('offers AES-256 only to SOFTWARE keys, all AES sizes to HSM keys', () => {
    expect(allowedKeySpecs('SOFTWARE')).toEqual(['Aliyun_AES_256']);
    expect(allowedKeySpecs('HSM')).toEqual(['Aliyun_AES_256', 'Aliyun_AES_192', 'Aliyun_AES_128']);
  });

  const lengths = [
    ['Aliyun_AES_256', 32],
    ['Aliyun_AES_192', 24],
    ['Aliyun_AES_128', 16],
  ] as const;
  it.each(lengths)('%s: %i-byte material, ENCRYPT/DECRYPT', (spec, bytes) => {
    expect(materialLength(spec)).toBe(bytes);
    expect(defaultKeyUsage(spec)).toBe('ENCRYPT/DECRYPT');
  });

  it('covers every spec', () => {
    expect(KEY_SPECS.map(materialLength)).toEqual([32, 24, 16]);
  });
});

describe('canRotateAutomatically (seed 000, seed 002)', () => {
  const cases: Array<[RotationEligibility, boolean]> = [
    [{ origin: 'Aliyun_KMS', protection: 'SOFTWARE' }, true],
    [{ origin: 'EXTERNAL', protection: 'SOFTWARE' }, false],
    [{ origin: 'Aliyun_KMS', protection: 'HSM', storage: 'HsmEncryptedDatabase' }, true],
    [{ origin: 'Aliyun_KMS', protection: 'HSM', storage: 'HsmInternal' }, false],
    [{ origin: 'Aliyun_KMS', protection: 'HSM' }, false],
    [{ origin: 'EXTERNAL', protection: 'HSM', storage: 'HsmEncryptedDatabase' }, false],
    [{ origin: 'EXTERNAL', protection: 'HSM', storage: 'HsmInternal' }, false],
  ];
  it.each(cases)('%o → %s', (key, expected) => {
    expect(canRotateAutomatically(key)).toBe(expected);
    expect(canCreateKeyVersion(key)).toBe(expected);
  });
});
