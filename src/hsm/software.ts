import { createCipheriv, createDecipheriv } from 'node:crypto';
import { internalFailure, invalidCiphertext } from '../domain/errors.js';
import { nextGcmIv } from './gcm-iv.js';
import type { AesGcmSealed } from './hsm.js';

/**
 * The SOFTWARE tier's cipher: node:crypto AES-GCM with version material unsealed from the
 * HSM root key into process memory. Material is cached (bounded) and zeroed on eviction.
 */
export class SoftwareCipher {
  private readonly cache = new Map<string, Buffer>();

  constructor(private readonly maxCachedKeys = 10_000) {}

  encrypt(material: Buffer, plaintext: Buffer, aad: Buffer | undefined): AesGcmSealed {
    const iv = nextGcmIv();
    const cipher = createCipheriv(algorithmFor(material), material, iv);
    if (aad) cipher.setAAD(aad);
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return { iv, ciphertext, tag: cipher.getAuthTag() };
  }

  decrypt(material: Buffer, sealed: AesGcmSealed, aad: Buffer | undefined): Buffer {
    try {
      const decipher = createDecipheriv(algorithmFor(material), material, sealed.iv);
      if (aad) decipher.setAAD(aad);
      decipher.setAuthTag(sealed.tag);
      return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
    } catch {
      throw invalidCiphertext();
    }
  }

  /** Returns the cached material of a version, or loads it with `unseal` and caches it. */
  async material(versionId: string, unseal: () => Promise<Buffer>): Promise<Buffer> {
    const cached = this.cache.get(versionId);
    if (cached) {
      // Refresh recency: Map keeps insertion order, so re-inserting makes it the newest.
      this.cache.delete(versionId);
      this.cache.set(versionId, cached);
      return cached;
    }
    const material = await unseal();
    this.cache.set(versionId, material);
    while (this.cache.size > this.maxCachedKeys) {
      const oldest = this.cache.keys().next().value as string;
      this.forget(oldest);
    }
    return material;
  }

  /** Drops and zeroes a version's material (deleted or expired material). */
  forget(versionId: string): void {
    const material = this.cache.get(versionId);
    if (!material) return;
    material.fill(0);
    this.cache.delete(versionId);
  }

  clear(): void {
    for (const id of [...this.cache.keys()]) this.forget(id);
  }
}

function algorithmFor(material: Buffer): 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' {
  switch (material.length) {
    case 16:
      return 'aes-128-gcm';
    case 24:
      return 'aes-192-gcm';
    case 32:
      return 'aes-256-gcm';
    default:
      throw internalFailure('Unexpected material length.');
  }
}
