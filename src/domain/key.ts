/**
 * The key policy: every rule about what a key may do in which state, how actions move it
 * between states, which specs a protection level offers and who may rotate. Services ask
 * here and never re-derive these rules (Vault's keysutil.Policy habit).
 */
import { invalidParameter, rejectedState, stateModifiedFailed, unsupportedOperation } from './errors.js';

export type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion' | 'PendingImport';
export const KEY_STATES: readonly KeyState[] = ['Enabled', 'Disabled', 'PendingDeletion', 'PendingImport'];

/** Symmetric specs; only `Aliyun_AES_256` for SOFTWARE keys (alibaba-api.md §5.2). */
export type KeySpec = 'Aliyun_AES_256' | 'Aliyun_AES_192' | 'Aliyun_AES_128';
export const KEY_SPECS: readonly KeySpec[] = ['Aliyun_AES_256', 'Aliyun_AES_192', 'Aliyun_AES_128'];
export const DEFAULT_KEY_SPEC: KeySpec = 'Aliyun_AES_256';

export type KeyUsage = 'ENCRYPT/DECRYPT' | 'SIGN/VERIFY';
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
  | 'GetKeyPolicy';

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
};

export const KEY_ACTIONS = Object.keys(MATRIX) as readonly KeyAction[];

/**
 * Whether `action` may run on a key in `state`, exactly per alibaba-api.md §5.1.
 * @throws `Rejected.<state>` (409) or `Rejected.StateModifiedFailed` (409).
 */
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

/** Specs a protection level offers: SOFTWARE only AES-256; HSM AES-256/192/128. */
export const allowedKeySpecs = (protection: ProtectionLevel): readonly KeySpec[] =>
  protection === 'SOFTWARE' ? ['Aliyun_AES_256'] : KEY_SPECS;

/** Symmetric specs cannot sign, so their usage is always ENCRYPT/DECRYPT (§5.2). */
export const defaultKeyUsage = (_spec: KeySpec): KeyUsage => 'ENCRYPT/DECRYPT';

/** Material length in bytes: 32, 24 or 16. */
export const materialLength = (spec: KeySpec): 32 | 24 | 16 =>
  spec === 'Aliyun_AES_256' ? 32 : spec === 'Aliyun_AES_192' ? 24 : 16;

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

export function rotationClass(key: RotationSubject): RotationClass {
  const byok = key.origin === 'EXTERNAL';
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
