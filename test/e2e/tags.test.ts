import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyId } from '../helpers/fixtures.js';
import { KMS, type CallApi, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/** Issue 3, tags (alibaba-api.md §3.5, §5.7; seed 000) through the real SDKs. */
let server: TestServer;
let call: CallApi;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
});

afterAll(async () => {
  await server?.stop();
});

const tagsJson = (pairs: Record<string, string>) => JSON.stringify(Object.entries(pairs).map(([TagKey, TagValue]) => ({ TagKey, TagValue })));
const tagsOf = async (keyId: string) =>
  Object.fromEntries(((await call('ListResourceTags', { KeyId: keyId })).Tags.Tag as Array<{ TagKey: string; TagValue: string }>).map((t) => [t.TagKey, t.TagValue]));

describe('@alicloud/kms20160120@1.2.0: TagResource, UntagResource, ListResourceTags', () => {
  it('tags, overwrites, lists in the Tags.Tag wrapper and untags', async () => {
    const client = legacyClient(server.endpoint, server.admin);
    const keyId = await createKeyId(call, { Tags: tagsJson({ team: 'payments' }) });
    await client.tagResource(new KMS.TagResourceRequest({ keyId, tags: tagsJson({ env: 'prod', 'cost:center': 'a/b\\c_d-e.f+g=h@i' }) }));
    await client.tagResource(new KMS.TagResourceRequest({ keyId, tags: tagsJson({ env: 'staging' }) }));
    const listed = await client.listResourceTags(new KMS.ListResourceTagsRequest({ keyId }));
    expect(listed.tags.tag).toEqual([
      { keyId, tagKey: 'cost:center', tagValue: 'a/b\\c_d-e.f+g=h@i' },
      { keyId, tagKey: 'env', tagValue: 'staging' },
      { keyId, tagKey: 'team', tagValue: 'payments' },
    ]);
    await client.untagResource(new KMS.UntagResourceRequest({ keyId, tagKeys: JSON.stringify(['env', 'not-there']) }));
    expect(await tagsOf(keyId)).toEqual({ 'cost:center': 'a/b\\c_d-e.f+g=h@i', team: 'payments' });
  });
});

describe('callApi: the 20-tag limit and validation', () => {
  it('counts existing tags: 18 + 2 new is fine, + 1 more is Rejected.LimitExceeded, overwriting is not adding', async () => {
    const keyId = await createKeyId(call);
    const eighteen = Object.fromEntries(Array.from({ length: 18 }, (_, i) => [`k${i}`, `v${i}`]));
    await call('TagResource', { KeyId: keyId, Tags: tagsJson(eighteen) });
    await call('TagResource', { KeyId: keyId, Tags: tagsJson({ k18: 'x', k19: 'y', k0: 'overwritten' }) });
    expect(Object.keys(await tagsOf(keyId))).toHaveLength(20);
    const over = await sdkError(() => call('TagResource', { KeyId: keyId, Tags: tagsJson({ k20: 'one too many' }) }));
    expect([over.code, over.statusCode]).toEqual(['Rejected.LimitExceeded', 400]);
    expect(over.data.Message).toContain('20');
    await call('TagResource', { KeyId: keyId, Tags: tagsJson({ k1: 'still fine' }) });
    expect((await tagsOf(keyId)).k0).toBe('overwritten');
  });

  it('refuses bad tags with InvalidParameter (400)', async () => {
    const keyId = await createKeyId(call);
    const cases: Array<[string, string]> = [
      ['21 tags in one call', tagsJson(Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v'])))],
      ['acs: key', tagsJson({ 'acs:owner': 'x' })],
      ['aliyun key', tagsJson({ aliyunService: 'x' })],
      ['129-character key', tagsJson({ ['k'.repeat(129)]: 'x' })],
      ['129-character value', tagsJson({ k: 'v'.repeat(129) })],
      ['forbidden character', tagsJson({ 'a#b': 'x' })],
      ['empty key', tagsJson({ '': 'x' })],
      ['not JSON', 'team=payments'],
      ['not a list', JSON.stringify({ TagKey: 'k', TagValue: 'v' })],
    ];
    for (const [name, tags] of cases) {
      const error = await sdkError(() => call('TagResource', { KeyId: keyId, Tags: tags }));
      expect([name, error.code, error.statusCode]).toEqual([name, 'InvalidParameter', 400]);
    }
    const createWith21 = await sdkError(() => call('CreateKey', { Tags: cases[0]![1] }));
    expect(createWith21.code).toBe('InvalidParameter');
    expect(await tagsOf(keyId)).toEqual({});
  });

  it('refuses secrets and certificates clearly, and needs a resource', async () => {
    const secret = await sdkError(() => call('TagResource', { SecretName: 's', Tags: tagsJson({ a: 'b' }) }));
    expect([secret.code, secret.statusCode]).toEqual(['Rejected.UnsupportedOperation', 400]);
    const none = await sdkError(() => call('TagResource', { Tags: tagsJson({ a: 'b' }) }));
    expect(none.code).toBe('MissingParameter');
    // Two resources at once is refused, not the key tagged and the other name ignored (found by a probe).
    const keyId = await createKeyId(call);
    for (const other of [{ SecretName: 's' }, { CertificateId: 'c' }]) {
      for (const action of ['TagResource', 'UntagResource'] as const) {
        const extra = action === 'TagResource' ? { Tags: tagsJson({ both: 'x' }) } : { TagKeys: JSON.stringify(['both']) };
        const both = await sdkError(() => call(action, { KeyId: keyId, ...other, ...extra }));
        expect([both.code, both.statusCode]).toEqual(['InvalidParameter', 400]);
      }
    }
    expect(await tagsOf(keyId)).toEqual({});
  });
});

describe('callApi: TagResources, UntagResources, ListTagResources (ResourceId.N, Tag.N.Key)', () => {
  it('tags several keys at once, lists them in the TagResources wrapper, untags some or all', async () => {
    const a = await createKeyId(call);
    const b = await createKeyId(call);
    await call('TagResources', {
      ResourceType: 'key',
      ResourceId: [a, b],
      Tag: [
        { Key: 'project', Value: 'atlas' },
        { Key: 'tier', Value: 'gold' },
      ],
    });
    const listed = await call('ListTagResources', { ResourceType: 'key', ResourceId: [b, a] });
    expect(listed.NextToken).toBe('');
    const expected = [a, b].sort().flatMap((id) => [
      { ResourceId: id, ResourceType: 'key', TagKey: 'project', TagValue: 'atlas' },
      { ResourceId: id, ResourceType: 'key', TagKey: 'tier', TagValue: 'gold' },
    ]);
    expect(listed.TagResources.TagResource).toEqual(expected);

    // Filter by tag (and value): only matching pairs.
    const byTag = await call('ListTagResources', { ResourceType: 'key', ResourceId: [a, b], Tag: [{ Key: 'tier' }] });
    expect((byTag.TagResources.TagResource as Array<{ TagKey: string }>).map((t) => t.TagKey)).toEqual(['tier', 'tier']);
    const byValue = await call('ListTagResources', { ResourceType: 'key', Tag: [{ Key: 'project', Value: 'atlas' }] });
    expect((byValue.TagResources.TagResource as Array<{ ResourceId: string }>).map((t) => t.ResourceId).sort()).toEqual([a, b].sort());
    const noValueMatch = await call('ListTagResources', { ResourceType: 'key', ResourceId: [a], Tag: [{ Key: 'project', Value: 'zeus' }] });
    expect(noValueMatch.TagResources.TagResource).toEqual([]);

    await call('UntagResources', { ResourceType: 'key', ResourceId: [a], TagKey: ['tier'] });
    expect(await tagsOf(a)).toEqual({ project: 'atlas' });
    await call('UntagResources', { ResourceType: 'key', ResourceId: [a, b], All: true });
    expect(await tagsOf(a)).toEqual({});
    expect(await tagsOf(b)).toEqual({});
  });

  it('pages with NextToken (200 rows a page) without losing or repeating a pair', async () => {
    const keys: string[] = [];
    for (let i = 0; i < 11; i++) {
      const keyId = await createKeyId(call);
      keys.push(keyId);
      await call('TagResource', { KeyId: keyId, Tags: tagsJson(Object.fromEntries(Array.from({ length: 20 }, (_, j) => [`page-${j}`, `${i}`]))) });
    }
    const seen: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const r = await call('ListTagResources', { ResourceType: 'key', ResourceId: keys, NextToken: token || undefined });
      seen.push(...(r.TagResources.TagResource as Array<{ ResourceId: string; TagKey: string }>).map((t) => `${t.ResourceId}/${t.TagKey}`));
      token = r.NextToken as string;
      pages++;
    } while (token);
    expect(pages).toBe(2);
    expect(seen).toHaveLength(220);
    expect(new Set(seen).size).toBe(220);
    const bad = await sdkError(() => call('ListTagResources', { ResourceType: 'key', ResourceId: keys, NextToken: 'not-a-token' }));
    expect(bad.code).toBe('InvalidParameter');
  });

  it('is all-or-nothing across keys: one key over the limit tags none', async () => {
    const roomy = await createKeyId(call);
    const full = await createKeyId(call, { Tags: tagsJson(Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`t${i}`, 'x']))) });
    const error = await sdkError(() => call('TagResources', { ResourceType: 'key', ResourceId: [roomy, full], Tag: [{ Key: 'new', Value: 'y' }] }));
    expect(error.code).toBe('Rejected.LimitExceeded');
    expect(await tagsOf(roomy)).toEqual({});
  });

  it('validates: ResourceType, missing ResourceId.N / Tag.N / TagKey.N, acs: keys, 21 tags, unknown keys', async () => {
    const keyId = await createKeyId(call);
    const cases: Array<[string, string, Record<string, unknown>, string]> = [
      ['secret type', 'TagResources', { ResourceType: 'secret', ResourceId: [keyId], Tag: [{ Key: 'a', Value: 'b' }] }, 'InvalidParameter'],
      ['no type', 'TagResources', { ResourceId: [keyId], Tag: [{ Key: 'a', Value: 'b' }] }, 'MissingParameter'],
      ['no resource', 'TagResources', { ResourceType: 'key', Tag: [{ Key: 'a', Value: 'b' }] }, 'MissingParameter'],
      ['no tag', 'TagResources', { ResourceType: 'key', ResourceId: [keyId] }, 'MissingParameter'],
      ['acs: key', 'TagResources', { ResourceType: 'key', ResourceId: [keyId], Tag: [{ Key: 'acs:x', Value: 'b' }] }, 'InvalidParameter'],
      ['21 tags', 'TagResources', { ResourceType: 'key', ResourceId: [keyId], Tag: Array.from({ length: 21 }, (_, i) => ({ Key: `k${i}`, Value: 'v' })) }, 'InvalidParameter'],
      ['repeated key', 'TagResources', { ResourceType: 'key', ResourceId: [keyId], Tag: [{ Key: 'a', Value: '1' }, { Key: 'a', Value: '2' }] }, 'InvalidParameter'],
      ['51 resources', 'TagResources', { ResourceType: 'key', ResourceId: Array.from({ length: 51 }, () => keyId), Tag: [{ Key: 'a', Value: 'b' }] }, 'InvalidParameter'],
      ['unknown key', 'TagResources', { ResourceType: 'key', ResourceId: ['key-nope'], Tag: [{ Key: 'a', Value: 'b' }] }, 'Forbidden.KeyNotFound'],
      ['untag nothing', 'UntagResources', { ResourceType: 'key', ResourceId: [keyId] }, 'MissingParameter'],
      ['list nothing', 'ListTagResources', { ResourceType: 'key' }, 'MissingParameter'],
    ];
    for (const [name, action, query, code] of cases) {
      const error = await sdkError(() => call(action, query));
      expect([name, error.code]).toEqual([name, code]);
      expect(error.statusCode).toBeLessThan(500);
    }
  });
});
