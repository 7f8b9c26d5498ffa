/**
 * The audit trail's rules, without I/O: what an event is, how it is serialised canonically
 * and hashed into its chain, which chain it belongs to, and what a signed digest covers.
 *
 * Every hash is recomputable from the row alone: the canonical serialisation is a JSON array
 * of the row's own columns in a fixed order (JSON.stringify of an array of strings, numbers
 * and nulls has one form), and `detail` is stored as the very text that was hashed (a `text`
 * column, never `jsonb`, which reorders keys).
 */
import { createHash } from 'node:crypto';

/** Shards of the trail: events go to the chain of their key (or request), so one chain does not serialise every transaction. */
export const AUDIT_CHAINS = 16;

/** prev_hash of a chain's first event, and prev_digest_hash of its first digest. */
export const GENESIS_HASH = '0'.repeat(64);

/** result_code of an event whose call succeeded (refusals carry the Alibaba error code). */
export const AUDIT_OK = 'OK';

/**
 * Crypto calls: recorded (success or refusal) through the batched path, off the hot path
 * (observability/crypto-call-audit.ts). Mutating calls are recorded in their own transaction
 * by the services; every other refused call is recorded through the batched path too.
 */
export const CRYPTO_ACTIONS: ReadonlySet<string> = new Set([
  'Encrypt',
  'Decrypt',
  'ReEncrypt',
  'GenerateDataKey',
  'GenerateDataKeyWithoutPlaintext',
  'GenerateAndExportDataKey',
  'ExportDataKey',
  'AsymmetricSign',
  'AsymmetricVerify',
  'AsymmetricEncrypt',
  'AsymmetricDecrypt',
  'GenerateMac',
  'VerifyMac',
  'GetRandomPassword',
]);

/**
 * What a caller records. `detail` must never hold plaintext, key material, tokens, PINs or
 * secrets: ids, names, states, dates and codes only.
 */
export interface AuditEvent {
  requestId?: string | undefined;
  accessKeyId?: string | undefined;
  sourceIp?: string | undefined;
  action: string;
  keyId?: string | undefined;
  keyVersionId?: string | undefined;
  /** AUDIT_OK, or the Alibaba error code of a refusal. Default AUDIT_OK. */
  resultCode?: string | undefined;
  detail?: Record<string, unknown> | undefined;
  /** When it happened; default: when it is appended. */
  at?: Date | undefined;
}

/** One row of the trail, as stored (and as `kms audit export` prints it). */
export interface AuditRecord {
  chainId: number;
  seq: number;
  at: Date;
  requestId: string | null;
  accessKeyId: string | null;
  sourceIp: string | null;
  action: string;
  keyId: string | null;
  keyVersionId: string | null;
  resultCode: string;
  /** Canonical JSON text, exactly as hashed. */
  detail: string;
  prevHash: string;
  hash: string;
}

/** JSON with object keys sorted at every level: one text per value. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value instanceof Date) return value.toISOString();
  if (value !== null && typeof value === 'object') {
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) sorted[key] = sortKeys(v);
    }
    return sorted;
  }
  return value;
}

/** FNV-1a over the text: a cheap, stable spread of keys over chains. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * The chain of an event: its key's (so one key's events are in one order), else its
 * request's or caller's. Any choice is verifiable; this one spreads load and keeps a key's
 * history together.
 */
export function chainOf(e: Pick<AuditEvent, 'keyId' | 'requestId' | 'accessKeyId' | 'action'>): number {
  return fnv1a(e.keyId ?? e.requestId ?? e.accessKeyId ?? e.action) % AUDIT_CHAINS;
}

/** The row an event becomes at (chainId, seq) after `prevHash`; its hash is computed here. */
export function sealEvent(e: AuditEvent, chainId: number, seq: number, prevHash: string, now: Date): AuditRecord {
  const unhashed: Omit<AuditRecord, 'hash'> = {
    chainId,
    seq,
    // Millisecond precision: what a JS Date holds and timestamptz gives back unchanged.
    at: new Date((e.at ?? now).getTime()),
    requestId: e.requestId ?? null,
    accessKeyId: e.accessKeyId ?? null,
    sourceIp: e.sourceIp ?? null,
    action: e.action,
    keyId: e.keyId ?? null,
    keyVersionId: e.keyVersionId ?? null,
    resultCode: e.resultCode ?? AUDIT_OK,
    detail: canonicalJson(e.detail ?? {}),
    prevHash,
  };
  return { ...unhashed, hash: eventHash(unhashed) };
}

/** The canonical serialisation of a row (everything but its own hash). */
export function eventPreimage(r: Omit<AuditRecord, 'hash'>): string {
  return JSON.stringify([
    'hsm-kms-audit-v1',
    r.chainId,
    r.seq,
    r.at.toISOString(),
    r.requestId,
    r.accessKeyId,
    r.sourceIp,
    r.action,
    r.keyId,
    r.keyVersionId,
    r.resultCode,
    r.detail,
    r.prevHash,
  ]);
}

export const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

export const eventHash = (r: Omit<AuditRecord, 'hash'>): string => sha256Hex(eventPreimage(r));

/**
 * A signed statement about one chain: "up to seq `lastSeq` its last hash is `lastHash`",
 * linked to the chain's previous digest. Signed inside the HSM (Hsm.signAuditDigest), so
 * whoever can write the database cannot rewrite covered history and re-chain it.
 */
export interface AuditDigest {
  chainId: number;
  digestSeq: number;
  firstSeq: number;
  lastSeq: number;
  eventCount: number;
  firstAt: Date;
  lastAt: Date;
  lastHash: string;
  prevDigestHash: string;
  createdAt: Date;
}

export function digestPreimage(d: AuditDigest): string {
  return JSON.stringify([
    'hsm-kms-audit-digest-v1',
    d.chainId,
    d.digestSeq,
    d.firstSeq,
    d.lastSeq,
    d.eventCount,
    d.firstAt.toISOString(),
    d.lastAt.toISOString(),
    d.lastHash,
    d.prevDigestHash,
    d.createdAt.toISOString(),
  ]);
}

export const digestHash = (d: AuditDigest): string => sha256Hex(digestPreimage(d));
