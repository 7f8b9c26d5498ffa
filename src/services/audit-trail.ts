/**
 * The audit trail's use cases (issue 17): signing digests of each chain in the HSM, verifying
 * every chain and digest, listing and exporting events. Recording is in store/audit.ts
 * (mutating calls, in their transaction) and observability/crypto-call-audit.ts (crypto calls,
 * batched).
 */
import { createHash, createPublicKey, verify as verifySignature, type KeyObject } from 'node:crypto';
import { type AuditDigest, type AuditRecord, GENESIS_HASH, digestHash, digestPreimage, eventHash } from '../domain/audit.js';
import {
  type AuditEntry,
  type AuditFilter,
  type StoredAuditDigest,
  chainPage,
  chainTimeRange,
  getChainHead,
  insertDigest,
  lastDigest,
  listAudit,
  listChainIds,
  listDigests,
  lockDigestCreation,
} from '../store/audit.js';
import { withTransaction } from '../store/db.js';
import type { ServiceDeps } from './context.js';

const PAGE = 5_000;

/** Id of a digest signing key: SHA-256 of its DER SubjectPublicKeyInfo, hex. */
export const signingKeyIdOf = (publicKeyDer: Buffer): string => createHash('sha256').update(publicKeyDer).digest('hex');

/** What the token keeps of a chain's newest digest (Hsm.writeAuditAnchor): canonical JSON. */
interface AuditAnchor {
  digestSeq: number;
  digestHash: string;
}

const serialiseAnchor = (d: AuditAnchor): Buffer => Buffer.from(JSON.stringify({ digestHash: d.digestHash, digestSeq: d.digestSeq }), 'utf8');

function parseAnchor(value: Buffer): AuditAnchor | undefined {
  try {
    const parsed = JSON.parse(value.toString('utf8')) as Partial<AuditAnchor>;
    if (typeof parsed.digestSeq === 'number' && typeof parsed.digestHash === 'string') return { digestSeq: parsed.digestSeq, digestHash: parsed.digestHash };
  } catch {
    // Not ours, or damaged: reported as such by verify.
  }
  return undefined;
}

/**
 * Signs a digest of every chain that grew since its last digest (the repeatable job, and
 * `kms audit digest`). Per chain, under an advisory lock, so two runs never race on one chain.
 * After each digest commits, the chain's anchor in the token is moved to it (a failure there
 * is thrown once every chain had its turn: the digests stand, and the anchor lags by one until
 * the next run; two runs that interleave may leave it one digest behind, never ahead).
 * @returns the digests made
 */
export async function createAuditDigests(deps: Pick<ServiceDeps, 'db' | 'hsm' | 'clock'>): Promise<StoredAuditDigest[]> {
  const made: StoredAuditDigest[] = [];
  let anchorFailure: unknown;
  for (const chainId of await listChainIds(deps.db)) {
    const digest = await withTransaction(deps.db, async (tx) => {
      await lockDigestCreation(tx, chainId);
      const head = await getChainHead(tx, chainId);
      const previous = await lastDigest(tx, chainId);
      const firstSeq = (previous?.lastSeq ?? 0) + 1;
      if (!head || head.seq < firstSeq) return undefined;
      const range = await chainTimeRange(tx, chainId, firstSeq, head.seq);
      if (!range) return undefined;
      const unsigned: AuditDigest = {
        chainId,
        digestSeq: (previous?.digestSeq ?? 0) + 1,
        firstSeq,
        lastSeq: head.seq,
        eventCount: head.seq - firstSeq + 1,
        firstAt: range.firstAt,
        lastAt: range.lastAt,
        lastHash: head.hash,
        prevDigestHash: previous?.digestHash ?? GENESIS_HASH,
        // Millisecond precision, as timestamptz gives it back.
        createdAt: new Date(deps.clock.now().getTime()),
      };
      const { signature, publicKeyDer } = await deps.hsm.signAuditDigest(Buffer.from(digestPreimage(unsigned), 'utf8'));
      const stored: StoredAuditDigest = { ...unsigned, digestHash: digestHash(unsigned), signature, signingKeyId: signingKeyIdOf(publicKeyDer) };
      await insertDigest(tx, stored);
      return stored;
    });
    if (!digest) continue;
    made.push(digest);
    await deps.hsm.writeAuditAnchor(chainId, serialiseAnchor(digest)).catch((error: unknown) => (anchorFailure ??= error));
  }
  if (anchorFailure !== undefined) throw anchorFailure;
  return made;
}

export interface ChainVerification {
  chainId: number;
  events: number;
  digests: number;
  /** Events after the last digest (not yet signed). */
  unsignedEvents: number;
  /** Whether the token holds this chain's anchor (digests made before anchors existed have none). */
  anchored: boolean;
  /** The first thing found wrong, naming the row or digest; undefined: the chain verifies. */
  problem?: string | undefined;
}

export interface AuditVerification {
  ok: boolean;
  chains: ChainVerification[];
  events: number;
  digests: number;
  /** The first problem of the first broken chain. */
  firstProblem?: string | undefined;
}

/**
 * Recomputes every chain from its rows (seq continuity, prev_hash links, each row's hash over
 * its canonical serialisation, the head) and checks every digest: its links, its hash, the
 * event hash it names, and its signature with the HSM's own audit digest public key (a key
 * the database cannot substitute).
 */
export async function verifyAuditTrail(deps: Pick<ServiceDeps, 'db' | 'hsm'>): Promise<AuditVerification> {
  const trusted = new Map<string, KeyObject>();
  for (const der of await deps.hsm.auditDigestPublicKeys()) {
    trusted.set(signingKeyIdOf(der), createPublicKey({ key: der, format: 'der', type: 'spki' }));
  }
  const chains: ChainVerification[] = [];
  for (const chainId of await listChainIds(deps.db)) chains.push(await verifyChain(deps, chainId, trusted));
  const broken = chains.find((c) => c.problem !== undefined);
  return {
    ok: broken === undefined,
    chains,
    events: chains.reduce((n, c) => n + c.events, 0),
    digests: chains.reduce((n, c) => n + c.digests, 0),
    firstProblem: broken?.problem,
  };
}

const rowName = (r: Pick<AuditRecord, 'chainId' | 'seq' | 'action' | 'requestId' | 'keyId'>) =>
  `row chain=${r.chainId} seq=${r.seq} (action ${r.action}${r.keyId ? `, key ${r.keyId}` : ''}${r.requestId ? `, request ${r.requestId}` : ''})`;

async function verifyChain(deps: Pick<ServiceDeps, 'db' | 'hsm'>, chainId: number, trusted: ReadonlyMap<string, KeyObject>): Promise<ChainVerification> {
  // A live deployment appends while this reads, so each read is bounded by the one before it:
  // the anchor (written after its digest's commit), then the digests, then the head, then the
  // rows up to the head's seq only (found by a probe: verify on a busy deployment failed with
  // "rows deleted at the end?" when rows and head were read at different moments).
  const storedAnchors = await deps.hsm.readAuditAnchor(chainId);
  const digests = await listDigests(deps.db, chainId);
  const head = await getChainHead(deps.db, chainId);
  const headSeq = head?.seq ?? Number.POSITIVE_INFINITY;
  const wanted = new Set(digests.map((d) => d.lastSeq));
  const hashAt = new Map<number, string>();
  const result: ChainVerification = { chainId, events: 0, digests: digests.length, unsignedEvents: 0, anchored: false };
  const fail = (problem: string) => ({ ...result, problem });

  let prevHash = GENESIS_HASH;
  let lastSeq = 0;
  reading: for (;;) {
    const page = await chainPage(deps.db, chainId, lastSeq, PAGE);
    for (const row of page) {
      if (row.seq > headSeq) break reading;
      if (row.seq !== lastSeq + 1) {
        return fail(`chain ${chainId}: seq ${lastSeq + 1} is missing (deleted?); the next row is ${rowName(row)}`);
      }
      if (row.prevHash !== prevHash) {
        return fail(`${rowName(row)}: prev_hash does not match the hash of seq ${lastSeq} (rows deleted, reordered or re-chained)`);
      }
      const { hash, ...unhashed } = row;
      if (eventHash(unhashed) !== hash) return fail(`${rowName(row)}: hash does not match its content (edited)`);
      prevHash = hash;
      lastSeq = row.seq;
      result.events++;
      if (wanted.has(row.seq)) hashAt.set(row.seq, hash);
    }
    if (page.length < PAGE) break;
  }
  if (head && (head.seq !== lastSeq || head.hash !== prevHash)) {
    return fail(`chain ${chainId}: its head says seq ${head.seq}, but the rows end at seq ${lastSeq} (rows deleted at the end?)`);
  }

  let previous: StoredAuditDigest | undefined;
  for (const d of digests) {
    const name = `digest chain=${chainId} #${d.digestSeq} (seq ${d.firstSeq}..${d.lastSeq})`;
    if (d.digestSeq !== (previous?.digestSeq ?? 0) + 1) return fail(`${name}: digest #${(previous?.digestSeq ?? 0) + 1} is missing`);
    if (d.prevDigestHash !== (previous?.digestHash ?? GENESIS_HASH)) return fail(`${name}: does not link to the previous digest`);
    if (d.firstSeq !== (previous?.lastSeq ?? 0) + 1 || d.eventCount !== d.lastSeq - d.firstSeq + 1) {
      return fail(`${name}: its range or count does not follow the previous digest`);
    }
    if (digestHash(d) !== d.digestHash) return fail(`${name}: digest_hash does not match its content`);
    const key = trusted.get(d.signingKeyId);
    if (!key) return fail(`${name}: signed by a key that is not the HSM's audit digest key`);
    if (!verifySignature('sha256', Buffer.from(digestPreimage(d), 'utf8'), key, d.signature)) {
      return fail(`${name}: the signature does not verify with the HSM's audit digest key (digest rewritten)`);
    }
    const covered = hashAt.get(d.lastSeq);
    if (covered === undefined) return fail(`${name}: seq ${d.lastSeq} it signs is missing from the chain (rows deleted)`);
    if (covered !== d.lastHash) {
      return fail(`${name}: the chain's hash at seq ${d.lastSeq} differs from the signed one (history rewritten and re-chained)`);
    }
    previous = d;
  }
  result.unsignedEvents = lastSeq - (previous?.lastSeq ?? 0);

  // The token's anchor: the newest digest signed for this chain must still be there, as signed.
  if (storedAnchors.length > 0) {
    const anchors = storedAnchors.map(parseAnchor);
    if (anchors.some((a) => a === undefined)) return fail(`chain ${chainId}: the HSM's audit anchor cannot be read`);
    // Two for the moment a write replaces one: the newer counts.
    const anchor = (anchors as AuditAnchor[]).reduce((a, b) => (b.digestSeq > a.digestSeq ? b : a));
    const anchored = digests.find((d) => d.digestSeq === anchor.digestSeq);
    if (!anchored) {
      return fail(`chain ${chainId}: digest #${anchor.digestSeq}, which the HSM's anchor names, is missing (digests deleted, with the history they covered?)`);
    }
    if (anchored.digestHash !== anchor.digestHash) return fail(`chain ${chainId}: digest #${anchor.digestSeq} differs from the HSM's anchor (digests rewritten)`);
    result.anchored = true;
  }
  return result;
}

/** `kms audit list` and the dashboard: events by key, action, caller and time, parsed for reading. */
export function listAuditEvents(deps: Pick<ServiceDeps, 'db'>, filter: AuditFilter): Promise<AuditEntry[]> {
  return listAudit(deps.db, filter);
}

/** `kms audit export --digests`: every digest as stored, chain by chain in order. */
export async function* exportAuditDigests(deps: Pick<ServiceDeps, 'db'>): AsyncGenerator<StoredAuditDigest> {
  for (const chainId of await listChainIds(deps.db)) yield* await listDigests(deps.db, chainId);
}

/** `kms audit public-key`: the HSM's audit digest public keys as PEM, for verifying digests elsewhere. */
export async function auditDigestPublicKeysPem(deps: Pick<ServiceDeps, 'hsm'>): Promise<Array<{ signingKeyId: string; pem: string }>> {
  return (await deps.hsm.auditDigestPublicKeys()).map((der) => ({
    signingKeyId: signingKeyIdOf(der),
    pem: createPublicKey({ key: der, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }).toString(),
  }));
}

/** `kms audit export`: every row as stored (detail as its hashed text), chain by chain in seq order. */
export async function* exportAuditTrail(deps: Pick<ServiceDeps, 'db'>): AsyncGenerator<AuditRecord> {
  for (const chainId of await listChainIds(deps.db)) {
    let lastSeq = 0;
    for (;;) {
      const page = await chainPage(deps.db, chainId, lastSeq, PAGE);
      for (const row of page) {
        yield row;
        lastSeq = row.seq;
      }
      if (page.length < PAGE) break;
    }
  }
}
