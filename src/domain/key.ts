/**
 * The key policy: every rule about what a key may do in which state, how actions move it
 * between states, which specs a protection level offers and who may rotate. Services ask
 * here and never re-derive these rules (Vault's keysutil.Policy habit).
 */
import { KmsError, invalidParameter, rejectedState, stateModifiedFailed, unsupportedOperation } from './errors.js';
import { ASYMMETRIC_SPECS, type AsymmetricKeySpec, MAC_SPECS, type MacKeySpec, SYMMETRIC_SPECS, type SymmetricKeySpec, isAsymmetricShape, keyShape } from './key-spec.js';

export type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion' | 'PendingImport';
export const KEY_STATES: readonly KeyState[] = ['Enabled', 'Disabled', 'PendingDeletion', 'PendingImport'];

/**
 * alibaba-api.md §5.2: symmetric specs (only `Aliyun_AES_256` for SOFTWARE keys) and the
 * asymmetric ones (RSA_2048/3072, EC_P256/P256K, EC_SM2 where the HSM has SM2). What each
 * spec is cryptographically is domain/key-spec.ts.
 */
export type KeySpec = SymmetricKeySpec | AsymmetricKeySpec | MacKeySpec;
/** MAC specs (`HMAC_SHA*`) are ours: Alibaba names none (domain/key-spec.ts). */
export const KEY_SPECS: readonly KeySpec[] = [...SYMMETRIC_SPECS, ...ASYMMETRIC_SPECS, ...MAC_SPECS];
export const DEFAULT_KEY_SPEC: KeySpec = 'Aliyun_AES_256';

/** `GENERATE/VERIFY_MAC` is for HMAC keys (GenerateMac/VerifyMac). */
export type KeyUsage = 'ENCRYPT/DECRYPT' | 'SIGN/VERIFY' | 'GENERATE/VERIFY_MAC';
export const KEY_USAGES: readonly KeyUsage[] = ['ENCRYPT/DECRYPT', 'SIGN/VERIFY', 'GENERATE/VERIFY_MAC'];
/** Where material comes from; `EXTERNAL` is BYOK (seed 000). Case-sensitive on the wire. */
export type Origin = 'Aliyun_KMS' | 'EXTERNAL';
export type ProtectionLevel = 'SOFTWARE' | 'HSM';
/** Hardware instances only: how version material is held (DESIGN.md, Protection tiers). */
export type KeyStorageMechanism = 'HsmInternal' | 'HsmEncryptedDatabase';

/** Alibaba's `AutomaticRotation`: Suspended while a key with rotation on is not Enabled. */
export type AutomaticRotation = 'Enabled' | 'Disabled' | 'Suspended';

/** A key: metadata in Postgres; its material lives per version (domain/key-version.ts). */
export interface Key {
  /** `key-…` */
  id: string;
  /** null: a default key (no instance). */
  instanceId: string | null;
  protectionLevel: ProtectionLevel;
  keySpec: KeySpec;
  keyUsage: KeyUsage;
  origin: Origin;
  state: KeyState;
  description: string;
  creator: string;
  deletionProtection: boolean;
  deletionProtectionDescription: string;
  deleteDate: Date | null;
  /** Hardware keys only. */
  storageMechanism: KeyStorageMechanism | null;
  automaticRotation: AutomaticRotation;
  rotationIntervalSeconds: number | null;
  /** Seed 002: the first version's creation, then every rotation's time. */
  lastRotationDate: Date | null;
  /** LastRotationDate + RotationInterval while automatic rotation is on. */
  nextRotationDate: Date | null;
  /** Why the last due automatic rotation failed (e.g. the quota); null after a success. */
  rotationFailure: string | null;
  /** The version Encrypt uses (seed 002); always one of the key's versions. */
  primaryVersionId: string;
  /** MaterialExpireTime of the primary version (read with the key; owned by the version). */
  primaryMaterialExpireAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export const isKeySpec = (s: string): s is KeySpec => (KEY_SPECS as readonly string[]).includes(s);
export const isOrigin = (s: string): s is Origin => s === 'Aliyun_KMS' || s === 'EXTERNAL';
export const isProtectionLevel = (s: string): s is ProtectionLevel => s === 'SOFTWARE' || s === 'HSM';
export const isKeyStorageMechanism = (s: string): s is KeyStorageMechanism =>
  s === 'HsmInternal' || s === 'HsmEncryptedDatabase';

/** The actions whose outcome depends on a key's state. */
export type KeyAction =
  | 'Encrypt'
  | 'Decrypt'
  | 'GenerateDataKey'
  | 'GenerateDataKeyWithoutPlaintext'
  | 'ExportDataKey'
  | 'GenerateAndExportDataKey'
  | 'ReEncrypt'
  | 'CreateKeyVersion'
  | 'UpdateRotationPolicy'
  | 'UpdateKeyDescription'
  | 'SetKeyPolicy'
  | 'TagResource'
  | 'UntagResource'
  | 'EnableKey'
  | 'DisableKey'
  | 'ScheduleKeyDeletion'
  | 'CancelKeyDeletion'
  | 'CreateAlias'
  | 'UpdateAlias'
  | 'DeleteAlias'
  | 'SetDeletionProtection'
  | 'GetParametersForImport'
  | 'ImportKeyMaterial'
  | 'DeleteKeyMaterial'
  | 'DescribeKey'
  | 'ListKeyVersions'
  | 'DescribeKeyVersion'
  | 'ListResourceTags'
  | 'ListAliasesByKeyId'
  | 'GetKeyPolicy'
  | 'AsymmetricEncrypt'
  | 'AsymmetricDecrypt'
  | 'AsymmetricSign'
  | 'AsymmetricVerify'
  | 'GetPublicKey'
  | 'GenerateMac'
  | 'VerifyMac';

/** ok; `Rejected.<current state>`; `Rejected.StateModifiedFailed`. */
type Outcome = 'ok' | 'rejected' | 'smf';
type Row = readonly [enabled: Outcome, disabled: Outcome, pendingDeletion: Outcome, pendingImport: Outcome];

const STATE_COLUMN = { Enabled: 0, Disabled: 1, PendingDeletion: 2, PendingImport: 3 } as const;

const CRYPTO: Row = ['ok', 'rejected', 'rejected', 'rejected'];
const METADATA: Row = ['ok', 'ok', 'rejected', 'ok'];
const TOGGLE: Row = ['ok', 'ok', 'smf', 'smf'];
const ALIAS: Row = ['ok', 'ok', 'smf', 'ok'];
const IMPORT: Row = ['ok', 'ok', 'rejected', 'ok'];
const ALWAYS: Row = ['ok', 'ok', 'ok', 'ok'];

/**
 * alibaba-api.md §5.1, row by row. Rows the doc did not capture are marked as our choice:
 * CreateKeyVersion is a crypto op; SetKeyPolicy edits metadata like UpdateKeyDescription;
 * UpdateAlias is checked against the *target* key like CreateAlias; the import pair works
 * in any state but PendingDeletion; DeleteKeyMaterial always (PendingDeletion is kept).
 */
const MATRIX: Readonly<Record<KeyAction, Row>> = {
  Encrypt: CRYPTO,
  Decrypt: CRYPTO,
  GenerateDataKey: CRYPTO,
  GenerateDataKeyWithoutPlaintext: CRYPTO,
  // Our choice (rows §5.1 did not capture): the data-key actions like GenerateDataKey; ReEncrypt
  // is checked on both keys, the source as Decrypt would be and the destination as Encrypt.
  ExportDataKey: CRYPTO,
  GenerateAndExportDataKey: CRYPTO,
  ReEncrypt: CRYPTO,
  CreateKeyVersion: CRYPTO, // our choice
  UpdateRotationPolicy: CRYPTO,
  UpdateKeyDescription: METADATA,
  SetKeyPolicy: METADATA, // our choice
  TagResource: METADATA,
  UntagResource: METADATA,
  EnableKey: TOGGLE,
  DisableKey: TOGGLE,
  ScheduleKeyDeletion: ['ok', 'ok', 'smf', 'ok'],
  CancelKeyDeletion: ['smf', 'smf', 'ok', 'smf'],
  CreateAlias: ALIAS,
  UpdateAlias: ALIAS, // "special": the target key's state decides
  DeleteAlias: ALWAYS,
  SetDeletionProtection: METADATA,
  GetParametersForImport: IMPORT, // our choice
  ImportKeyMaterial: IMPORT, // our choice
  DeleteKeyMaterial: ALWAYS, // our choice
  DescribeKey: ALWAYS,
  ListKeyVersions: ALWAYS,
  DescribeKeyVersion: ALWAYS,
  ListResourceTags: ALWAYS,
  ListAliasesByKeyId: ALWAYS,
  GetKeyPolicy: ALWAYS,
  // §5.1: only Enabled keys do cryptographic operations; GetPublicKey is one (our choice).
  AsymmetricEncrypt: CRYPTO,
  AsymmetricDecrypt: CRYPTO,
  AsymmetricSign: CRYPTO,
  AsymmetricVerify: CRYPTO,
  GetPublicKey: CRYPTO,
  // Our choice, as for every cryptographic operation (§5.1 has no MAC rows).
  GenerateMac: CRYPTO,
  VerifyMac: CRYPTO,
};

export const KEY_ACTIONS = Object.keys(MATRIX) as readonly KeyAction[];

/**
 * Whether `action` may run on a key in `state`, exactly per alibaba-api.md §5.1.
 * @throws `Rejected.<state>` (409) or `Rejected.StateModifiedFailed` (409).
 */
/** Whether `action` is allowed in `state` (assertAllowed without the error). */
export function isAllowed(action: KeyAction, state: KeyState): boolean {
  return MATRIX[action][STATE_COLUMN[state]] === 'ok';
}

export function assertAllowed(action: KeyAction, state: KeyState): void {
  const outcome = MATRIX[action][STATE_COLUMN[state]];
  if (outcome === 'rejected') throw rejectedState(state);
  if (outcome === 'smf') throw stateModifiedFailed();
}

/** What `stateAfter` needs to know about a key. */
export interface KeyStateView {
  state: KeyState;
  /** Whether the key holds usable material (always true for `Aliyun_KMS` keys). */
  hasMaterial: boolean;
}

/** Not an API action: imported material reached its `MaterialExpireTime`. */
export type KeyEvent = KeyAction | 'ExpireKeyMaterial';

/**
 * The state a key is in after `event`, once `assertAllowed` passed (this calls it, so it
 * throws the same errors). Events that do not move the state return the current one.
 */
export function stateAfter(event: KeyEvent, key: KeyStateView): KeyState {
  if (event !== 'ExpireKeyMaterial') assertAllowed(event, key.state);
  switch (event) {
    case 'EnableKey':
      return 'Enabled';
    case 'DisableKey':
      return 'Disabled';
    case 'ScheduleKeyDeletion':
      return 'PendingDeletion';
    case 'CancelKeyDeletion':
      // §5.5 says Enabled; a BYOK key whose material is gone cannot be usable.
      return key.hasMaterial ? 'Enabled' : 'PendingImport';
    case 'ImportKeyMaterial':
      // Seed 000: import moves PendingImport → Enabled; a Disabled key stays Disabled.
      return key.state === 'PendingImport' ? 'Enabled' : key.state;
    case 'DeleteKeyMaterial':
    case 'ExpireKeyMaterial':
      // §5.1: DeleteKeyMaterial does not change PendingDeletion.
      return key.state === 'PendingDeletion' ? key.state : 'PendingImport';
    default:
      return key.state;
  }
}

/**
 * Specs a protection level offers: SOFTWARE AES-256 and the asymmetric specs; HSM every
 * spec. EC_SM2 is listed here and refused by the service unless the token has SM2 (a probe,
 * hsm/pkcs11/capabilities.ts) — never on SOFTWARE (node:crypto has no SM2 key generation).
 */
export const allowedKeySpecs = (protection: ProtectionLevel): readonly KeySpec[] =>
  protection === 'SOFTWARE' ? ['Aliyun_AES_256', ...ASYMMETRIC_SPECS.filter((s) => s !== 'EC_SM2'), ...MAC_SPECS] : KEY_SPECS;

export const isAsymmetricSpec = (spec: string): spec is AsymmetricKeySpec => (ASYMMETRIC_SPECS as readonly string[]).includes(spec);
export const isMacSpec = (spec: string): spec is MacKeySpec => (MAC_SPECS as readonly string[]).includes(spec);

/**
 * The usages a spec may have (§5.2): RSA encrypts or signs, EC (and SM2) signs (SM2PKE is
 * not implemented), symmetric keys encrypt.
 */
export function allowedKeyUsages(spec: KeySpec): readonly KeyUsage[] {
  const shape = keyShape(spec);
  if (shape.kind === 'rsa') return ['ENCRYPT/DECRYPT', 'SIGN/VERIFY'];
  if (shape.kind === 'ec') return ['SIGN/VERIFY'];
  // MAC keys only MAC (issue 15).
  if (shape.kind === 'hmac') return ['GENERATE/VERIFY_MAC'];
  return ['ENCRYPT/DECRYPT'];
}

/** §5.2: SIGN/VERIFY if the spec can sign, otherwise ENCRYPT/DECRYPT; a MAC spec's only usage (ours). */
export const defaultKeyUsage = (spec: KeySpec): KeyUsage => {
  const allowed = allowedKeyUsages(spec);
  if (allowed.includes('SIGN/VERIFY')) return 'SIGN/VERIFY';
  return allowed.includes('ENCRYPT/DECRYPT') ? 'ENCRYPT/DECRYPT' : 'GENERATE/VERIFY_MAC';
};

/** Material length in bytes of a symmetric spec: 32, 24 or 16. */
export function materialLength(spec: KeySpec): 32 | 24 | 16 {
  const shape = keyShape(spec);
  if (shape.kind !== 'aes') throw new KmsError('InternalFailure', `Internal Failure. ${spec} has no symmetric material.`, 'internal');
  return (shape.bits / 8) as 32 | 24 | 16;
}

/**
 * Which actions each kind of key allows — the usage table, beside the state table. The
 * column is the key's usage, with ENCRYPT/DECRYPT split by spec: a symmetric key encrypts
 * with AES-GCM (Encrypt, data keys, ReEncrypt), an asymmetric one with RSA-OAEP.
 */
export type UsageColumn = 'symmetric-encrypt' | 'asymmetric-encrypt' | 'sign' | 'mac';
export const USAGE_COLUMNS: readonly UsageColumn[] = ['symmetric-encrypt', 'asymmetric-encrypt', 'sign', 'mac'];

/** The crypto actions whose key must have the right usage. */
export type UsageAction =
  | 'Encrypt'
  | 'Decrypt'
  | 'GenerateDataKey'
  | 'GenerateDataKeyWithoutPlaintext'
  | 'GenerateAndExportDataKey'
  | 'ExportDataKey'
  /** Both the source (symmetric form) and the destination of ReEncrypt. */
  | 'ReEncrypt'
  /** ReEncrypt's asymmetric source form (SourceKeyId, SourceKeyVersionId, SourceEncryptionAlgorithm). */
  | 'ReEncryptFromAsymmetric'
  | 'AsymmetricEncrypt'
  | 'AsymmetricDecrypt'
  | 'AsymmetricSign'
  | 'AsymmetricVerify'
  | 'GetPublicKey'
  | 'GenerateMac'
  | 'VerifyMac';

type UsageRow = Readonly<Record<UsageColumn, boolean>>;
const ONLY = (column: UsageColumn): UsageRow => ({
  'symmetric-encrypt': column === 'symmetric-encrypt',
  'asymmetric-encrypt': column === 'asymmetric-encrypt',
  sign: column === 'sign',
  mac: column === 'mac',
});

/**
 * ENCRYPT/DECRYPT keys cannot sign; SIGN/VERIFY keys cannot encrypt; MAC keys only MAC;
 * symmetric keys have no public key. GetPublicKey serves both asymmetric usages.
 */
const USAGE_TABLE: Readonly<Record<UsageAction, UsageRow>> = {
  Encrypt: ONLY('symmetric-encrypt'),
  Decrypt: ONLY('symmetric-encrypt'),
  GenerateDataKey: ONLY('symmetric-encrypt'),
  GenerateDataKeyWithoutPlaintext: ONLY('symmetric-encrypt'),
  GenerateAndExportDataKey: ONLY('symmetric-encrypt'),
  ExportDataKey: ONLY('symmetric-encrypt'),
  ReEncrypt: ONLY('symmetric-encrypt'),
  ReEncryptFromAsymmetric: ONLY('asymmetric-encrypt'),
  AsymmetricEncrypt: ONLY('asymmetric-encrypt'),
  AsymmetricDecrypt: ONLY('asymmetric-encrypt'),
  AsymmetricSign: ONLY('sign'),
  AsymmetricVerify: ONLY('sign'),
  GetPublicKey: { 'symmetric-encrypt': false, 'asymmetric-encrypt': true, sign: true, mac: false },
  GenerateMac: ONLY('mac'),
  VerifyMac: ONLY('mac'),
};

export const USAGE_ACTIONS = Object.keys(USAGE_TABLE) as readonly UsageAction[];

/** The column of the usage table a key falls in. */
export function usageColumn(key: { keySpec: string; keyUsage: KeyUsage }): UsageColumn {
  if (key.keyUsage === 'GENERATE/VERIFY_MAC') return 'mac';
  if (key.keyUsage === 'SIGN/VERIFY') return 'sign';
  return isAsymmetricSpec(key.keySpec) ? 'asymmetric-encrypt' : 'symmetric-encrypt';
}

export const usageAllows = (action: UsageAction, column: UsageColumn): boolean => USAGE_TABLE[action][column];

const COLUMN_NAMES: Readonly<Record<UsageColumn, string>> = {
  'symmetric-encrypt': 'a symmetric ENCRYPT/DECRYPT key',
  'asymmetric-encrypt': 'an asymmetric ENCRYPT/DECRYPT key',
  sign: 'a SIGN/VERIFY key',
  mac: 'a GENERATE/VERIFY_MAC key',
};

/**
 * @throws Rejected.UnsupportedOperation (400, alibaba-api.md §5.10, the AsymmetricEncrypt
 *   doc's code) when the key's usage does not allow `action`.
 */
export function assertUsageAllows(action: UsageAction, key: { keySpec: string; keyUsage: KeyUsage }): void {
  const column = usageColumn(key);
  if (!usageAllows(action, column)) {
    throw unsupportedOperation(`${action} is not available for ${COLUMN_NAMES[column]} (KeySpec ${key.keySpec}, KeyUsage ${key.keyUsage}).`);
  }
}

export { isAsymmetricShape, keyShape };

/**
 * Who may rotate how: seed 002's scope table ("キーローテーション: 範囲") as hsm-kms implements
 * it. Each key falls in exactly one row; services ask `rotationRule` / the assertions below
 * and never re-derive these rules. README "Key rotation" documents the same table.
 */
export type RotationClass =
  | 'software-generated'
  | 'software-byok'
  | 'hsm-generated'
  | 'hsm-byok'
  | 'asymmetric'
  | 'mac'
  | 'default-generated'
  | 'default-byok';

/**
 * Automatic (periodic) rotation: `custom` any interval of 7–365 days; `fixed-365d` only
 * the default keys' 365 days (seed 002: "ローテーション期間は 365 日で、変更できません"); `no`.
 */
export type AutomaticRotationRule = 'custom' | 'fixed-365d' | 'no';

/**
 * Manual rotation: `new-version` — CreateKeyVersion generates new material; `import-new-material`
 * — new material is imported (ImportType=NEW_KEY_MATERIAL, a PendingRotation version) and
 * CreateKeyVersion rotates it in (seed 002, BYOK); `no`.
 */
export type ManualRotationRule = 'new-version' | 'import-new-material' | 'no';

export interface RotationRule {
  automatic: AutomaticRotationRule;
  manual: ManualRotationRule;
  /** The refusal's explanation, read by the client in Rejected.UnsupportedOperation. */
  why: string;
}

/** Seed 002's table. Rows it leaves open are marked as our choice. */
const WHO_MAY_ROTATE: Readonly<Record<RotationClass, RotationRule>> = {
  'software-generated': { automatic: 'custom', manual: 'new-version', why: '' },
  'software-byok': {
    automatic: 'no',
    manual: 'import-new-material',
    why: 'Keys with imported material (Origin=EXTERNAL) rotate only by importing new material: ImportKeyMaterial with ImportType=NEW_KEY_MATERIAL, then CreateKeyVersion.',
  },
  // Both storage mechanisms: the new version is a new token object (HsmInternal) like the first.
  'hsm-generated': { automatic: 'custom', manual: 'new-version', why: '' },
  // Our choice: imported material lives in a non-extractable token object per key; the
  // seed's console flow for new material covers software keys only.
  'hsm-byok': {
    automatic: 'no',
    manual: 'no',
    why: 'Keys of a hardware instance with imported material (Origin=EXTERNAL) cannot rotate.',
  },
  asymmetric: { automatic: 'no', manual: 'no', why: 'Asymmetric keys cannot rotate.' },
  // Our choice, as AWS KMS's HMAC keys: a MAC carries no version (GenerateMac answers no
  // KeyVersionId in Alibaba's API), so VerifyMac after a rotation could only try every
  // version; a MAC key keeps its one version for life.
  mac: { automatic: 'no', manual: 'no', why: 'MAC keys (GENERATE/VERIFY_MAC) cannot rotate: a MAC names no key version.' },
  'default-generated': {
    automatic: 'fixed-365d',
    manual: 'no',
    why: 'Default keys rotate only automatically, every 365 days; they have no manual rotation.',
  },
  // Our choice: a default key rotates only automatically, and imported material never does.
  'default-byok': {
    automatic: 'no',
    manual: 'no',
    why: 'Default keys with imported material (Origin=EXTERNAL) cannot rotate.',
  },
};

export const ROTATION_CLASSES = Object.keys(WHO_MAY_ROTATE) as readonly RotationClass[];

/** Seed 002: default keys rotate every 365 days, and that period cannot be changed. */
export const DEFAULT_KEY_ROTATION_INTERVAL_SECONDS = 365 * 86_400;

/** What decides the row of the who-may-rotate table. */
export interface RotationSubject {
  /** null: a default key. */
  instanceId: string | null;
  protectionLevel: ProtectionLevel;
  origin: Origin;
  /** Any spec name; only `Aliyun_AES_*` are symmetric (§5.2). */
  keySpec: string;
  /** Hardware keys only; both mechanisms rotate alike. */
  storageMechanism?: KeyStorageMechanism | null | undefined;
}

export const isSymmetricSpec = (spec: string): boolean => spec.startsWith('Aliyun_AES_') || spec === 'Aliyun_SM4';
// Rotation: HMAC_* specs fall in the `mac` row; every other spec that is not symmetric
// (RSA_*, EC_*) in the `asymmetric` row.

export function rotationClass(key: RotationSubject): RotationClass {
  const byok = key.origin === 'EXTERNAL';
  if (isMacSpec(key.keySpec)) return 'mac';
  if (!isSymmetricSpec(key.keySpec)) return 'asymmetric';
  if (key.instanceId === null) return byok ? 'default-byok' : 'default-generated';
  if (key.protectionLevel === 'HSM') return byok ? 'hsm-byok' : 'hsm-generated';
  return byok ? 'software-byok' : 'software-generated';
}

export const rotationRule = (key: RotationSubject): RotationRule => WHO_MAY_ROTATE[rotationClass(key)];

/**
 * The interval automatic rotation runs at, when it is being turned on: the requested one, or
 * for default keys the fixed 365 days (absent or exactly 365 days is accepted).
 * @throws Rejected.UnsupportedOperation for keys that never rotate automatically;
 *   InvalidParameter(RotationInterval) when it is missing, or another period on a default key.
 */
export function automaticRotationInterval(key: RotationSubject, requestedSeconds: number | undefined): number {
  const rule = rotationRule(key);
  if (rule.automatic === 'no') throw unsupportedOperation(`Automatic rotation is not available for this key. ${rule.why}`);
  if (rule.automatic === 'fixed-365d') {
    if (requestedSeconds !== undefined && requestedSeconds !== DEFAULT_KEY_ROTATION_INTERVAL_SECONDS) {
      throw invalidParameter('RotationInterval', 'Default keys rotate every 365 days (31536000s); the period cannot be changed.');
    }
    return DEFAULT_KEY_ROTATION_INTERVAL_SECONDS;
  }
  if (requestedSeconds === undefined) throw invalidParameter('RotationInterval', 'It is required when rotation is enabled.');
  return requestedSeconds;
}

/**
 * How CreateKeyVersion rotates this key.
 * @throws Rejected.UnsupportedOperation for keys without manual rotation.
 */
export function manualRotation(key: RotationSubject): Exclude<ManualRotationRule, 'no'> {
  const rule = rotationRule(key);
  if (rule.manual === 'no') throw unsupportedOperation(`Manual rotation is not available for this key. ${rule.why}`);
  return rule.manual;
}

/**
 * Whether ImportKeyMaterial may bring new material for a rotation (ImportType=NEW_KEY_MATERIAL).
 * @throws Rejected.UnsupportedOperation for every key but SOFTWARE keys with imported material.
 */
export function assertNewMaterialImport(key: RotationSubject): void {
  const rule = rotationRule(key);
  if (rule.manual !== 'import-new-material') {
    throw unsupportedOperation(`ImportType=NEW_KEY_MATERIAL is not available for this key. ${rule.why || 'Its material is generated by KMS: rotate it with CreateKeyVersion.'}`);
  }
}
