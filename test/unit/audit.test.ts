import { describe, expect, it } from 'vitest';
import {
  AUDIT_CHAINS,
  type AuditDigest,
  GENESIS_HASH,
  canonicalJson,
  chainOf,
  digestHash,
  eventHash,
  sealEvent,
} from '../../src/domain/audit.js';

const at = new Date('2026-11-30T12:00:00.123Z');

describe('canonical serialisation', () => {
  it('sorts keys at every level, drops undefined, dates as ISO: one text per value', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: undefined }, t: at })).toBe(
      '{"a":{"d":[2,{"y":2,"z":1}]},"b":1,"t":"2026-11-30T12:00:00.123Z"}',
    );
    expect(canonicalJson({ x: 1, y: 2 })).toBe(canonicalJson({ y: 2, x: 1 }));
  });
});

describe('sealing events into a chain', () => {
  const event = { action: 'Encrypt', keyId: 'key-abc', keyVersionId: 'v1', requestId: 'R1', accessKeyId: 'LTAI1', sourceIp: '127.0.0.1', detail: { httpStatus: 200 } };

  it('hashes the row it becomes, so the hash is recomputable from the stored columns', () => {
    const row = sealEvent(event, 3, 1, GENESIS_HASH, at);
    expect(row).toMatchObject({ chainId: 3, seq: 1, prevHash: GENESIS_HASH, resultCode: 'OK', detail: '{"httpStatus":200}' });
    const { hash, ...rest } = row;
    expect(eventHash(rest)).toBe(hash);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('changes the hash when any column changes (content, position, link)', () => {
    const base = sealEvent(event, 3, 1, GENESIS_HASH, at);
    const variants = [
      sealEvent({ ...event, resultCode: 'Forbidden.NoPermission' }, 3, 1, GENESIS_HASH, at),
      sealEvent({ ...event, sourceIp: '10.0.0.1' }, 3, 1, GENESIS_HASH, at),
      sealEvent({ ...event, detail: { httpStatus: 400 } }, 3, 1, GENESIS_HASH, at),
      sealEvent(event, 3, 2, GENESIS_HASH, at),
      sealEvent(event, 4, 1, GENESIS_HASH, at),
      sealEvent(event, 3, 1, 'f'.repeat(64), at),
      sealEvent(event, 3, 1, GENESIS_HASH, new Date(at.getTime() + 1)),
    ];
    for (const v of variants) expect(v.hash).not.toBe(base.hash);
  });

  it('tells a missing field from an empty one', () => {
    expect(sealEvent({ action: 'X' }, 0, 1, GENESIS_HASH, at).hash).not.toBe(sealEvent({ action: 'X', keyId: '' }, 0, 1, GENESIS_HASH, at).hash);
  });

  it('keeps one key on one chain, within range, and spreads keys over chains', () => {
    expect(chainOf({ keyId: 'key-abc', action: 'Encrypt' })).toBe(chainOf({ keyId: 'key-abc', action: 'CreateKey', requestId: 'other' }));
    const chains = new Set(Array.from({ length: 200 }, (_, i) => chainOf({ keyId: `key-${i}`, action: 'Encrypt' })));
    for (const c of chains) expect(c >= 0 && c < AUDIT_CHAINS).toBe(true);
    expect(chains.size).toBe(AUDIT_CHAINS);
  });
});

describe('digests', () => {
  it('hash every field they sign', () => {
    const d: AuditDigest = { chainId: 1, digestSeq: 2, firstSeq: 5, lastSeq: 9, eventCount: 5, firstAt: at, lastAt: at, lastHash: 'a'.repeat(64), prevDigestHash: GENESIS_HASH, createdAt: at };
    const base = digestHash(d);
    expect(digestHash({ ...d, lastHash: 'b'.repeat(64) })).not.toBe(base);
    expect(digestHash({ ...d, eventCount: 6 })).not.toBe(base);
    expect(digestHash({ ...d, prevDigestHash: 'c'.repeat(64) })).not.toBe(base);
    expect(digestHash({ ...d })).toBe(base);
  });
});
