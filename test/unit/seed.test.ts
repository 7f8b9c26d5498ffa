import { describe, expect, it } from 'vitest';
import { SeedFileError, parseSeedDocument, seedApplied } from '../../src/domain/seed.js';

const issues = (input: unknown): string[] => {
  try {
    parseSeedDocument(input);
  } catch (error) {
    if (error instanceof SeedFileError) return error.issues;
    throw error;
  }
  return [];
};

describe('seed documents', () => {
  it('fills in the defaults: SOFTWARE tier, Aliyun_AES_256, the spec\'s usage, generated material', () => {
    const doc = parseSeedDocument({ keys: [{ aliases: ['alias/a'] }, { id: 'key-abcd1234', spec: 'EC_P256', tags: { team: 'x' } }] });
    expect(doc.keys[0]).toMatchObject({ id: undefined, tier: 'SOFTWARE', spec: 'Aliyun_AES_256', usage: 'ENCRYPT/DECRYPT', origin: 'Aliyun_KMS', rotation: undefined });
    expect(doc.keys[1]).toMatchObject({ usage: 'SIGN/VERIFY', tags: [{ key: 'team', value: 'x' }] });
    expect(doc.instances).toEqual([]);
    expect(doc.accessKeys).toEqual([]);
    expect(parseSeedDocument(null)).toEqual({ instances: [], keys: [], accessKeys: [] });
  });

  it('parses rotation intervals with the API\'s rules, and material as bytes', () => {
    const material = Buffer.alloc(32, 7).toString('base64');
    const doc = parseSeedDocument({
      keys: [
        { id: 'key-rot00001', rotation: { interval: '30d' } },
        { id: 'key-rot00002', rotation: { enabled: false } },
        { id: 'key-ext00001', origin: 'EXTERNAL', material: { base64: material } },
        { id: 'key-ext00002', origin: 'EXTERNAL', material: { file: 'm.bin' } },
      ],
    });
    expect(doc.keys.map((k) => k.rotation)).toEqual([{ enabled: true, intervalSeconds: 30 * 86_400 }, { enabled: false }, undefined, undefined]);
    expect(doc.keys[2]?.material).toEqual({ kind: 'base64', bytes: Buffer.alloc(32, 7) });
    expect(doc.keys[3]?.material).toEqual({ kind: 'file', path: 'm.bin' });
    expect(issues({ keys: [{ id: 'key-rot00003', rotation: { interval: '3d' } }] })).toEqual(['keys.0.rotation.interval: It must be between 7 and 365 days.']);
  });

  it('names every problem with its path', () => {
    const found = issues({
      instances: [{ name: 'a', type: 'CLOUD' }],
      keys: [
        { id: 'Key-Upper' },
        { tier: 'HSM' },
        { id: 'key-dflt0001', tier: 'DEFAULT', instance: 'a' },
        { id: 'key-rsa00001', spec: 'RSA_2048', origin: 'EXTERNAL' },
        { id: 'key-mat00001', material: { base64: 'AAAA' } },
        { id: 'key-len00001', origin: 'EXTERNAL', material: { base64: 'AAAA' } },
        { id: 'key-use00001', spec: 'Aliyun_AES_256', usage: 'SIGN/VERIFY' },
        { id: 'key-tag00001', tags: { aliyun_reserved: 'x' }, aliases: ['alias/acs-x'] },
        { id: 'key-unk00001', unknown: true },
      ],
      accessKeys: [{ id: 'AKIA0000000000000000', secret: 'short' }],
    });
    const paths = found.map((i) => i.split(':')[0]);
    expect(paths).toEqual(
      expect.arrayContaining([
        'instances.0.type',
        'keys.0.id',
        'keys.1.id',
        'keys.2.instance',
        'keys.3.origin',
        'keys.4.material',
        'keys.5.material',
        'keys.6.usage',
        'keys.7.tags',
        'keys.7.aliases.0',
        'keys.8',
        'accessKeys.0.id',
        'accessKeys.0.secret',
      ]),
    );
  });

  it('refuses an instance, key id, alias or access key declared twice (names compared case-insensitively)', () => {
    const found = issues({
      instances: [{ name: 'pay', type: 'HSM' }, { name: 'PAY', type: 'HSM' }],
      keys: [
        { id: 'key-dup00001', aliases: ['alias/x'] },
        { id: 'key-dup00001', aliases: ['alias/X'] },
      ],
      accessKeys: [
        { id: 'LTAIduplicate00001', secret: '0123456789abcdef' },
        { id: 'LTAIduplicate00001', secret: '0123456789abcdef' },
      ],
    });
    expect(found).toEqual([
      'instances: instance PAY is declared twice',
      'keys: key id key-dup00001 is declared twice',
      'keys: alias alias/X is declared twice',
      'accessKeys: access key LTAIduplicate00001 is declared twice',
    ]);
  });

  it('counts an apply as clean only without conflicts and failures', () => {
    expect(seedApplied([{ kind: 'key', name: 'k', status: 'created' }, { kind: 'alias', name: 'a', status: 'unchanged' }])).toBe(true);
    expect(seedApplied([{ kind: 'key', name: 'k', status: 'conflict' }])).toBe(false);
    expect(seedApplied([{ kind: 'key', name: 'k', status: 'failed' }])).toBe(false);
  });
});
