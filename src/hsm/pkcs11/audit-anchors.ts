/**
 * The audit trail's anchors in the token (issue 17): per chain, what the newest digest the
 * service signed for it was — canonical JSON `{"digestHash":…,"digestSeq":…}` — in a private
 * CKO_DATA object, application `hsm-kms`, label `hsm-kms:audit-anchor:<chain>`. Whoever can
 * write the database cannot move them, so `kms audit verify` finds digests deleted (the newest,
 * or all of them, with the history they covered) and a chain wiped and restarted. They are
 * written after the digest's commit: an anchor lags its chain by at most one digest, never
 * leads it.
 */
import pkcs11js from 'pkcs11js';
import { isTransientCreationFailure } from './errors.js';
import type { SessionRunner } from './object-cache.js';
import { TOKEN_OBJECT_ATTEMPTS } from './token-object-retry.js';
import { findObjects } from './object-inventory.js';

const APPLICATION = 'hsm-kms';
const LABEL_PREFIX = 'hsm-kms:audit-anchor:';

const anchorTemplate = (chainId: number): pkcs11js.Template => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
  { type: pkcs11js.CKA_APPLICATION, value: APPLICATION },
  { type: pkcs11js.CKA_LABEL, value: `${LABEL_PREFIX}${chainId}` },
];

export class AuditAnchors {
  constructor(
    private readonly p11: pkcs11js.PKCS11,
    private readonly run: SessionRunner,
  ) {}

  /** Every anchor object of the chain, as written: one, or for a moment two (`write`); none when the token has none. */
  read(chainId: number): Promise<Buffer[]> {
    return this.run('readAuditAnchor', (session) =>
      findObjects(this.p11, session, anchorTemplate(chainId)).map((handle) => {
        const [value] = this.p11.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_VALUE }]);
        return Buffer.from(value?.value as Buffer);
      }),
    );
  }

  /**
   * Replaces the chain's anchor: the new object is made first and the old ones destroyed after
   * (SoftHSM2 keeps a data object's CKA_VALUE read-only), so the token never holds none.
   */
  write(chainId: number, value: Buffer): Promise<void> {
    return this.run('writeAuditAnchor', (session) => {
      const old = findObjects(this.p11, session, anchorTemplate(chainId));
      const template: pkcs11js.Template = [
        ...anchorTemplate(chainId),
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_VALUE, value },
      ];
      // A token-object creation SoftHSM2 now and then fails transiently (errors.ts), tried again.
      for (let attempt = 1; ; attempt++) {
        try {
          this.p11.C_CreateObject(session, template);
          break;
        } catch (error) {
          if (!isTransientCreationFailure(error) || attempt >= TOKEN_OBJECT_ATTEMPTS) throw error;
        }
      }
      for (const handle of old) this.p11.C_DestroyObject(session, handle);
    });
  }

  /** Destroys every anchor (`kms reset`, which empties the trail). @returns how many */
  clear(): Promise<number> {
    return this.run('clearAuditAnchors', (session) => {
      const handles = findObjects(this.p11, session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_APPLICATION, value: APPLICATION },
      ]);
      let destroyed = 0;
      for (const handle of handles) {
        const [label] = this.p11.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_LABEL }]);
        if (!String(label?.value ?? '').startsWith(LABEL_PREFIX)) continue;
        this.p11.C_DestroyObject(session, handle);
        destroyed += 1;
      }
      return destroyed;
    });
  }
}
