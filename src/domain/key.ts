/**
 * The key policy: every rule about what a key may do in which state, how actions move it
 * between states, which specs a protection level offers and who may rotate. Services ask
 * here and never re-derive these rules (Vault's keysutil.Policy habit).
 */
import { rejectedState, stateModifiedFailed } from './errors.js';

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

/** What decides whether a key may rotate. */
export interface RotationEligibility {
  origin: Origin;
  protection: ProtectionLevel;
  /** Hardware instances only; absent for SOFTWARE keys. */
  storage?: KeyStorageMechanism | undefined;
}

/**
 * Whether automatic (periodic) rotation may be enabled. Seed 000/002: BYOK keys never
 * rotate automatically (software BYOK rotates only by importing new material). HSM keys
 * rotate only when stored `HsmEncryptedDatabase` (`HsmInternal` has no rotation).
 */
export function canRotateAutomatically({ origin, protection, storage }: RotationEligibility): boolean {
  if (origin === 'EXTERNAL') return false;
  return protection === 'SOFTWARE' || storage === 'HsmEncryptedDatabase';
}

/**
 * Whether CreateKeyVersion (rotate now with new generated material) is possible: the same
 * keys as automatic rotation, since it generates material KMS-side (seed 002).
 */
export const canCreateKeyVersion = (key: RotationEligibility): boolean => canRotateAutomatically(key);
