/**
 * The audit trail's signing key (issue 17): one EC P-256 pair in the token, CKA_ID and label
 * `hsm-kms:audit-digest` (not a UUID, so the reconciler never lists it). The private half is
 * sensitive, non-extractable and may only sign (read back after creation, as every key the
 * service makes); digests of the audit chains are signed with it inside the token, so whoever
 * can write the database cannot re-sign a rewritten history.
 */
import { createHash, verify as verifySignature } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { ecdsaRawToDer } from '../../domain/asymmetric.js';
import { internalFailure } from '../../domain/errors.js';
import { CURVE_OID_DER } from '../../domain/key-spec.js';
import { isTransientCreationFailure, pkcs11Code } from './errors.js';
import * as m from './mechanisms.js';
import type { SessionRunner } from './object-cache.js';
import { findObjects } from './object-inventory.js';
import { assertUnreadable } from './protection.js';
import { ecPublicKeyDer } from './public-keys.js';

export const AUDIT_DIGEST_KEY_ID = 'hsm-kms:audit-digest';

const P256_SIGNATURE_BYTES = 64;

/** Tries of the pair's generation, and lookups of its public halves when a found handle was invalid by the time it was read. */
const LOOKUP_ATTEMPTS = 3;

export class AuditDigestKey {
  private ensured: Promise<void> | undefined;

  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly run: SessionRunner,
  ) {}

  /** Finds the pair, or creates it (first start, or `kms hsm init`). */
  ensure(): Promise<void> {
    this.ensured ??= this.run('auditDigestKey', async (session) => {
      // Two first starts may race (two servers in one process or on one token), and SoftHSM2
      // now and then fails a token-object generation transiently under load (isTransientCreationFailure): on that,
      // look again (the other start may have made the pair) and try again, a bounded number of
      // times. Nothing is destroyed here: what is under this id may be the other start's pair.
      for (let attempt = 1; ; attempt++) {
        if (findObjects(this.p11, session, m.privateKeyById(AUDIT_DIGEST_KEY_ID)).length > 0) return;
        const { publicTemplate, privateTemplate } = m.versionKeyPairTemplates(AUDIT_DIGEST_KEY_ID, { kind: 'ec', params: CURVE_OID_DER['P-256'] });
        try {
          const pair = await this.p11.C_GenerateKeyPairAsync(session, m.ecKeyPairGen, publicTemplate, privateTemplate);
          assertUnreadable(this.p11, session, pair.privateKey, [pair.privateKey, pair.publicKey]);
          return;
        } catch (error) {
          if (!isTransientCreationFailure(error) || attempt >= LOOKUP_ATTEMPTS) throw error;
        }
      }
    }).catch((error: unknown) => {
      this.ensured = undefined;
      throw error;
    });
    return this.ensured;
  }

  /** DER SPKI of every audit digest public key in the token (one, unless two first starts raced). */
  async publicKeys(): Promise<Buffer[]> {
    await this.ensure();
    return this.run('auditDigestPublicKeys', (session) => {
      // A handle found a moment ago can be gone when it is read (SoftHSM2 drops a slot's object
      // handles when its last session closes; seen once at the start of two servers in one
      // process): the pair is looked up again, a bounded number of times.
      for (let attempt = 1; ; attempt++) {
        try {
          return findObjects(this.p11, session, m.publicKeyById(AUDIT_DIGEST_KEY_ID)).map((handle) => ecPublicKeyDer(this.p11, session, handle, 'P-256'));
        } catch (error) {
          if (pkcs11Code(error) !== pkcs11js.CKR_OBJECT_HANDLE_INVALID || attempt >= LOOKUP_ATTEMPTS) throw error;
        }
      }
    });
  }

  /**
   * ECDSA P-256 over SHA-256(message), signed in the token; DER-encoded, so
   * `crypto.verify('sha256', message, publicKey, signature)` checks it.
   * @returns the signature and the public key that verifies it
   */
  async sign(message: Buffer): Promise<{ signature: Buffer; publicKeyDer: Buffer }> {
    await this.ensure();
    const digest = createHash('sha256').update(message).digest();
    const signature = await this.run('auditDigestSign', async (session) => {
      const [key] = findObjects(this.p11, session, m.privateKeyById(AUDIT_DIGEST_KEY_ID));
      if (key === undefined) throw internalFailure('The audit digest key is missing from the HSM.');
      this.p11.C_SignInit(session, m.ecdsa, key);
      return ecdsaRawToDer(Buffer.from(await this.p11.C_SignAsync(session, digest, Buffer.alloc(P256_SIGNATURE_BYTES))));
    });
    const publicKeyDer = (await this.publicKeys()).find((der) =>
      verifySignature('sha256', message, { key: der, format: 'der', type: 'spki' }, signature),
    );
    if (!publicKeyDer) throw internalFailure('No audit digest public key verifies the signature the HSM made.');
    return { signature, publicKeyDer };
  }
}
