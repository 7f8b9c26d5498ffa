import { describe, expect, it } from 'vitest';
import { KmsError } from '../../src/domain/errors.js';
import {
  allowedKeySpecs,
  assertAllowed,
  assertNewMaterialImport,
  automaticRotationInterval,
  DEFAULT_KEY_ROTATION_INTERVAL_SECONDS,
  manualRotation,
  ROTATION_CLASSES,
  rotationClass,
  rotationRule,
  defaultKeyUsage,
  allowedKeyUsages,
  KEY_ACTIONS,
  KEY_SPECS,
  KEY_STATES,
  materialLength,
  stateAfter,
  type KeyAction,
  type KeyEvent,
  type KeyState,
  type RotationClass,
  type RotationSubject,
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
  ExportDataKey: [OK, D, PD, PI],
  GenerateAndExportDataKey: [OK, D, PD, PI],
  ReEncrypt: [OK, D, PD, PI],
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
  AsymmetricEncrypt: [OK, D, PD, PI],
  AsymmetricDecrypt: [OK, D, PD, PI],
  AsymmetricSign: [OK, D, PD, PI],
  AsymmetricVerify: [OK, D, PD, PI],
  GetPublicKey: [OK, D, PD, PI],
  GenerateMac: [OK, D, PD, PI],
  VerifyMac: [OK, D, PD, PI],
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
  it('offers AES-256 and the asymmetric specs (not EC_SM2) to SOFTWARE keys, every spec to HSM keys', () => {
    const mac = ['HMAC_SHA224', 'HMAC_SHA256', 'HMAC_SHA384', 'HMAC_SHA512'];
    expect(allowedKeySpecs('SOFTWARE')).toEqual(['Aliyun_AES_256', 'RSA_2048', 'RSA_3072', 'EC_P256', 'EC_P256K', ...mac]);
    expect(allowedKeySpecs('HSM')).toEqual(['Aliyun_AES_256', 'Aliyun_AES_192', 'Aliyun_AES_128', 'RSA_2048', 'RSA_3072', 'EC_P256', 'EC_P256K', 'EC_SM2', ...mac]);
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

  it('covers every symmetric spec; asymmetric specs have no symmetric material', () => {
    expect(KEY_SPECS.filter((s) => s.startsWith('Aliyun_')).map(materialLength)).toEqual([32, 24, 16]);
    expect(() => materialLength('RSA_2048')).toThrow(KmsError);
  });

  // §5.2: SIGN/VERIFY if the spec can sign, otherwise ENCRYPT/DECRYPT.
  it.each([
    ['RSA_2048', 'SIGN/VERIFY', ['ENCRYPT/DECRYPT', 'SIGN/VERIFY']],
    ['RSA_3072', 'SIGN/VERIFY', ['ENCRYPT/DECRYPT', 'SIGN/VERIFY']],
    ['EC_P256', 'SIGN/VERIFY', ['SIGN/VERIFY']],
    ['EC_P256K', 'SIGN/VERIFY', ['SIGN/VERIFY']],
    ['EC_SM2', 'SIGN/VERIFY', ['SIGN/VERIFY']],
    // MAC keys only MAC (issue 15): their one usage is the default.
    ['HMAC_SHA224', 'GENERATE/VERIFY_MAC', ['GENERATE/VERIFY_MAC']],
    ['HMAC_SHA256', 'GENERATE/VERIFY_MAC', ['GENERATE/VERIFY_MAC']],
    ['HMAC_SHA384', 'GENERATE/VERIFY_MAC', ['GENERATE/VERIFY_MAC']],
    ['HMAC_SHA512', 'GENERATE/VERIFY_MAC', ['GENERATE/VERIFY_MAC']],
  ] as const)('%s: default usage %s, allowed %j', (spec, usage, allowed) => {
    expect(defaultKeyUsage(spec)).toBe(usage);
    expect(allowedKeyUsages(spec)).toEqual(allowed);
  });
});

describe('who may rotate (seed 002, README "Key rotation")', () => {
  const U = 'Rejected.UnsupportedOperation';
  /** The table as the README gives it: automatic | manual, per row. */
  const EXPECTED: Record<RotationClass, { automatic: 'custom' | 'fixed-365d' | 'no'; manual: 'new-version' | 'import-new-material' | 'no' }> = {
    'software-generated': { automatic: 'custom', manual: 'new-version' },
    'software-byok': { automatic: 'no', manual: 'import-new-material' },
    'hsm-generated': { automatic: 'custom', manual: 'new-version' },
    'hsm-byok': { automatic: 'no', manual: 'no' },
    asymmetric: { automatic: 'no', manual: 'no' },
    mac: { automatic: 'no', manual: 'no' },
    'default-generated': { automatic: 'fixed-365d', manual: 'no' },
    'default-byok': { automatic: 'no', manual: 'no' },
  };

  const base = { instanceId: 'kst-x', protectionLevel: 'SOFTWARE', origin: 'Aliyun_KMS', keySpec: 'Aliyun_AES_256' } as const;
  const ROWS: Array<[RotationClass, RotationSubject]> = [
    ['software-generated', base],
    ['software-byok', { ...base, origin: 'EXTERNAL' }],
    ['hsm-generated', { ...base, protectionLevel: 'HSM', storageMechanism: 'HsmInternal', keySpec: 'Aliyun_AES_128' }],
    ['hsm-generated', { ...base, protectionLevel: 'HSM', storageMechanism: 'HsmEncryptedDatabase' }],
    ['hsm-byok', { ...base, protectionLevel: 'HSM', storageMechanism: 'HsmInternal', origin: 'EXTERNAL' }],
    ['hsm-byok', { ...base, protectionLevel: 'HSM', storageMechanism: 'HsmEncryptedDatabase', origin: 'EXTERNAL' }],
    ['asymmetric', { ...base, keySpec: 'RSA_2048' }],
    ['asymmetric', { ...base, protectionLevel: 'HSM', keySpec: 'EC_P256' }],
    ['asymmetric', { ...base, instanceId: null, keySpec: 'RSA_3072', origin: 'EXTERNAL' }],
    ['mac', { ...base, keySpec: 'HMAC_SHA256' }],
    ['mac', { ...base, protectionLevel: 'HSM', storageMechanism: 'HsmInternal', keySpec: 'HMAC_SHA512' }],
    ['mac', { ...base, instanceId: null, keySpec: 'HMAC_SHA224' }],
    ['default-generated', { ...base, instanceId: null }],
    ['default-byok', { ...base, instanceId: null, origin: 'EXTERNAL' }],
  ];

  it.each(ROWS)('%s: %o', (expected, key) => {
    expect(rotationClass(key)).toBe(expected);
    expect(rotationRule(key)).toMatchObject(EXPECTED[expected]);
  });

  it('every combination of tier, origin, spec and storage falls in one row, and every row is reached', () => {
    const reached = new Set<RotationClass>();
    for (const instanceId of [null, 'kst-x'])
      for (const protectionLevel of ['SOFTWARE', 'HSM'] as const)
        for (const origin of ['Aliyun_KMS', 'EXTERNAL'] as const)
          for (const keySpec of [...KEY_SPECS, 'Aliyun_SM4', 'RSA_2048', 'EC_P256'])
            for (const storageMechanism of [undefined, 'HsmInternal', 'HsmEncryptedDatabase'] as const) {
              const cls = rotationClass({ instanceId, protectionLevel, origin, keySpec, storageMechanism });
              expect(ROTATION_CLASSES).toContain(cls);
              reached.add(cls);
            }
    expect([...reached].sort()).toEqual([...ROTATION_CLASSES].sort());
    expect(Object.keys(EXPECTED).sort()).toEqual([...ROTATION_CLASSES].sort());
  });

  function code(fn: () => unknown): string {
    try {
      fn();
      return 'ok';
    } catch (error) {
      return error instanceof KmsError ? error.code : String(error);
    }
  }

  /** Cell by cell: what CreateKey/UpdateRotationPolicy, CreateKeyVersion and a NEW_KEY_MATERIAL import answer. */
  const CELLS: Record<RotationClass, [automatic7d: string, manual: string, newMaterial: string]> = {
    'software-generated': ['ok', 'new-version', U],
    'software-byok': [U, 'import-new-material', 'ok'],
    'hsm-generated': ['ok', 'new-version', U],
    'hsm-byok': [U, U, U],
    asymmetric: [U, U, U],
    mac: [U, U, U],
    'default-generated': ['InvalidParameter', U, U],
    'default-byok': [U, U, U],
  };
  it.each(ROWS)('%s: the refusals carry their code', (cls, key) => {
    const [automatic, manual, newMaterial] = CELLS[cls];
    expect(code(() => automaticRotationInterval(key, 7 * 86_400))).toBe(automatic);
    const how = code(() => manualRotation(key));
    expect(how === 'ok' ? manualRotation(key) : how).toBe(manual);
    expect(code(() => assertNewMaterialImport(key))).toBe(newMaterial);
  });

  it('custom intervals are kept and required; default keys take exactly 365 days or none', () => {
    expect(automaticRotationInterval(base, 604_800)).toBe(604_800);
    expect(code(() => automaticRotationInterval(base, undefined))).toBe('InvalidParameter');
    const defaultKey = { ...base, instanceId: null };
    expect(automaticRotationInterval(defaultKey, undefined)).toBe(DEFAULT_KEY_ROTATION_INTERVAL_SECONDS);
    expect(automaticRotationInterval(defaultKey, 365 * 86_400)).toBe(31_536_000);
    expect(code(() => automaticRotationInterval(defaultKey, 364 * 86_400))).toBe('InvalidParameter');
  });

  it('refusals explain themselves', () => {
    expect(() => manualRotation({ ...base, origin: 'EXTERNAL', protectionLevel: 'HSM' })).toThrow(/hardware instance with imported material/);
    expect(() => automaticRotationInterval({ ...base, origin: 'EXTERNAL' }, 604_800)).toThrow(/NEW_KEY_MATERIAL/);
  });
});
