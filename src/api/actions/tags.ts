import { z } from 'zod';
import { invalidParameter, missingParameter, unsupportedOperation } from '../../domain/errors.js';
import { MAX_TAGS_PER_KEY, type Tag, parseTagKeys, parseTags, validateTag } from '../../domain/tags.js';
import { listKeyTags, pageTagResources, tagKeys, untagKeys } from '../../services/tags.js';
import { withIndexed } from '../indexed-params.js';
import { p } from '../params.js';
import { defineAction } from './action.js';

/** The plural tag API takes up to 50 resources per call (3.x SDK documentation). */
const MAX_RESOURCES = 50;

/**
 * TagResource and friends name exactly one of KeyId / SecretName / CertificateId (§3.5).
 * This service has keys only: the other two are a clear refusal, not a silent no-op.
 */
function keyIdOf(params: { KeyId?: string | undefined; SecretName?: string | undefined; CertificateId?: string | undefined }): string {
  const named = [params.KeyId, params.SecretName, params.CertificateId].filter((n) => n !== undefined).length;
  if (named > 1) {
    throw invalidParameter('KeyId', 'Name exactly one resource: KeyId, SecretName or CertificateId, not several.');
  }
  if (params.KeyId !== undefined) return params.KeyId;
  if (params.SecretName !== undefined || params.CertificateId !== undefined) {
    throw unsupportedOperation('This service manages keys only: name the resource with KeyId.');
  }
  throw missingParameter('KeyId');
}

const singleResource = {
  KeyId: p.string(2048).optional(),
  SecretName: p.optionalString(),
  CertificateId: p.optionalString(),
};

const resourceType = () => p.enum(['key']);
const resourceIds = () =>
  z.array(p.string(2048)).min(1).max(MAX_RESOURCES, `At most ${MAX_RESOURCES} resources are allowed.`);
const tagFilters = () =>
  z
    .array(z.object({ Key: p.string(128), Value: p.optionalString(128) }))
    .max(MAX_TAGS_PER_KEY, `At most ${MAX_TAGS_PER_KEY} tags are allowed.`);

/** `Tag.N.Key` / `Tag.N.Value` to validated tags (same rules as the JSON `Tags`, §5.7). */
function toTags(items: ReadonlyArray<{ Key: string; Value?: string | undefined }>): Tag[] {
  const seen = new Set<string>();
  return items.map(({ Key: key, Value: value = '' }) => {
    validateTag(key, value, 'Tag.N');
    if (seen.has(key)) throw invalidParameter('Tag.N', `The tag key "${key}" is repeated.`);
    seen.add(key);
    return { key, value };
  });
}

export const tagActions = {
  TagResource: defineAction({
    access: 'admin',
    params: z.object({ ...singleResource, Tags: p.string(65_536) }),
    async handle(params, { kms, caller }) {
      const keyId = keyIdOf(params);
      await tagKeys(kms.deps, { keyIds: [keyId], tags: parseTags(params.Tags) }, caller);
      return {};
    },
  }),

  UntagResource: defineAction({
    access: 'admin',
    params: z.object({ ...singleResource, TagKeys: p.string(65_536) }),
    async handle(params, { kms, caller }) {
      const keyId = keyIdOf(params);
      await untagKeys(kms.deps, { keyIds: [keyId], tagKeys: parseTagKeys(params.TagKeys) }, caller);
      return {};
    },
  }),

  ListResourceTags: defineAction({
    access: 'read',
    params: z.object({ KeyId: p.string(2048) }),
    async handle(params, { kms, caller }) {
      const { keyId, tags } = await listKeyTags(kms.deps, params.KeyId, caller);
      return { Tags: { Tag: tags.map((t) => ({ KeyId: keyId, TagKey: t.key, TagValue: t.value })) } };
    },
  }),

  TagResources: defineAction({
    access: 'admin',
    params: withIndexed(
      { lists: ['ResourceId'], records: { Tag: ['Key', 'Value'] } },
      z.object({ ResourceType: resourceType(), 'ResourceId.N': resourceIds(), 'Tag.N': tagFilters().min(1) }),
    ),
    async handle(params, { kms, caller }) {
      await tagKeys(kms.deps, { keyIds: params['ResourceId.N'], tags: toTags(params['Tag.N']) }, caller);
      return {};
    },
  }),

  UntagResources: defineAction({
    access: 'admin',
    params: withIndexed(
      { lists: ['ResourceId', 'TagKey'] },
      z.object({
        ResourceType: resourceType(),
        'ResourceId.N': resourceIds(),
        'TagKey.N': z.array(p.string(128)).max(MAX_TAGS_PER_KEY, `At most ${MAX_TAGS_PER_KEY} tag keys are allowed.`).optional(),
        All: p.boolean().optional(),
      }),
    ),
    async handle(params, { kms, caller }) {
      const keys = params['TagKey.N'];
      // `All` takes effect only when no TagKey.N is given (3.x SDK documentation).
      if (!keys && params.All !== true) throw missingParameter('TagKey.N');
      await untagKeys(kms.deps, { keyIds: params['ResourceId.N'], tagKeys: keys ?? 'all' }, caller);
      return {};
    },
  }),

  ListTagResources: defineAction({
    access: 'read',
    params: withIndexed(
      { lists: ['ResourceId'], records: { Tag: ['Key', 'Value'] } },
      z.object({
        ResourceType: resourceType(),
        'ResourceId.N': resourceIds().optional(),
        'Tag.N': tagFilters().optional(),
        NextToken: p.optionalString(4096),
      }),
    ),
    async handle(params, { kms, caller }) {
      const keyIds = params['ResourceId.N'];
      const tags = params['Tag.N'];
      if (!keyIds && !tags) throw missingParameter('ResourceId.N');
      const { pairs, nextToken } = await pageTagResources(
        kms.deps,
        { keyIds, tags: tags?.map((t) => ({ key: t.Key, value: t.Value })), nextToken: params.NextToken || undefined },
        caller,
      );
      return {
        NextToken: nextToken,
        TagResources: {
          TagResource: pairs.map((t) => ({ ResourceId: t.keyId, ResourceType: 'key', TagKey: t.key, TagValue: t.value })),
        },
      };
    },
  }),
};
