/**
 * Seed files (issue 18): a declarative description of a test rig's instances, keys and access
 * keys, applied by services/seed.ts through the ordinary use cases. This module only parses and
 * validates the document (already decoded from YAML or JSON); it reads no files.
 */
import { z } from 'zod';
import { validateAliasName } from './alias.js';
import { KmsError } from './errors.js';
import { isAccessKeyIdFormat, isKeyIdFormat } from './ids.js';
import { type KeySpec, type KeyUsage, KEY_SPECS, KEY_USAGES, allowedKeyUsages, defaultKeyUsage, isSymmetricSpec, materialLength } from './key.js';
import { parseRotationInterval } from './rotation.js';
import { MAX_TAGS_PER_KEY, type Tag, validateTag } from './tags.js';

/** Where a seeded key lives: an HSM instance, a SOFTWARE instance, or no instance (a default key). */
export type SeedTier = 'HSM' | 'SOFTWARE' | 'DEFAULT';

export interface SeedInstance {
  name: string;
  type: 'HSM' | 'SOFTWARE';
  keyQuota: number;
  qps: number;
}

/** Known material of an EXTERNAL key: inline base64, or a file (relative to the seed file) of raw bytes. */
export type SeedMaterialSource = { kind: 'base64'; bytes: Buffer } | { kind: 'file'; path: string };

export interface SeedKey {
  /** A fixed key id, or undefined: then the first alias finds the key on later applies. */
  id: string | undefined;
  tier: SeedTier;
  /** An instance name (or `kst-` id); undefined: the first instance of the tier. */
  instance: string | undefined;
  spec: KeySpec;
  usage: KeyUsage;
  origin: 'Aliyun_KMS' | 'EXTERNAL';
  description: string | undefined;
  tags: Tag[];
  aliases: string[];
  /** undefined: the policy is left as it is; else enabled with the interval, or disabled. */
  rotation: { enabled: true; intervalSeconds: number } | { enabled: false } | undefined;
  material: SeedMaterialSource | undefined;
}

export interface SeedAccessKey {
  id: string;
  secret: string;
  role: 'admin' | 'key-user';
  /** Instance names or ids a key-user is limited to; empty: every instance. */
  instances: string[];
  description: string;
}

export interface SeedDocument {
  instances: SeedInstance[];
  keys: SeedKey[];
  accessKeys: SeedAccessKey[];
}

/** Shortest access key secret a seed may pin (the bootstrap credentials' rule, issue 18). */
export const MIN_SEED_SECRET_LENGTH = 16;

/** Runs a domain validator (which throws KmsError) as a zod refinement with its message. */
const domainCheck =
  <T>(check: (value: T) => void) =>
  (value: T, ctx: z.RefinementCtx) => {
    try {
      check(value);
    } catch (error) {
      // The API's wording names an API parameter; a seed file's reader needs only the rule.
      const message = error instanceof KmsError ? error.message.replace(/^The specified parameter "\w+" is not valid\.\s*/, '') : String(error);
      ctx.addIssue({ code: z.ZodIssueCode.custom, message });
    }
  };

const instanceSchema = z
  .object({
    name: z.string().min(1).max(128),
    type: z.enum(['HSM', 'SOFTWARE']),
    keyQuota: z.number().int().min(0).default(1000),
    qps: z.number().int().min(1).default(1000),
  })
  .strict();

const materialSchema = z.union([
  z.object({ base64: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be standard base64') }).strict(),
  z.object({ file: z.string().min(1) }).strict(),
]);

const rotationSchema = z.union([
  z.object({ interval: z.string().superRefine(domainCheck(parseRotationInterval)) }).strict(),
  z.object({ enabled: z.literal(false) }).strict(),
]);

const keySchema = z
  .object({
    id: z.string().refine(isKeyIdFormat, 'a key id is "key-" and 4 to 60 lowercase letters or digits').optional(),
    tier: z.enum(['HSM', 'SOFTWARE', 'DEFAULT']).default('SOFTWARE'),
    instance: z.string().min(1).optional(),
    spec: z.enum(KEY_SPECS as [KeySpec, ...KeySpec[]]).default('Aliyun_AES_256'),
    usage: z.enum(KEY_USAGES as [KeyUsage, ...KeyUsage[]]).optional(),
    origin: z.enum(['Aliyun_KMS', 'EXTERNAL']).default('Aliyun_KMS'),
    description: z.string().max(8192).optional(),
    tags: z.record(z.string(), z.string()).default({}),
    aliases: z.array(z.string().superRefine(domainCheck(validateAliasName))).default([]),
    rotation: rotationSchema.optional(),
    material: materialSchema.optional(),
  })
  .strict()
  .superRefine((k, ctx) => {
    const issue = (message: string, path: string) => ctx.addIssue({ code: z.ZodIssueCode.custom, message, path: [path] });
    if (k.id === undefined && k.aliases.length === 0) issue('a key needs an id or an alias, so that applying the file again finds it', 'id');
    if (k.usage !== undefined && !allowedKeyUsages(k.spec).includes(k.usage)) issue(`${k.spec} supports ${allowedKeyUsages(k.spec).join(' or ')}`, 'usage');
    if (k.tier === 'DEFAULT' && k.instance !== undefined) issue('a DEFAULT key belongs to no instance', 'instance');
    if (k.origin === 'EXTERNAL' && !isSymmetricSpec(k.spec)) issue('keys with imported material (EXTERNAL) are symmetric only', 'origin');
    if (k.origin !== 'EXTERNAL' && k.material !== undefined) issue('only EXTERNAL keys take material', 'material');
    if (k.material && 'base64' in k.material) {
      const bytes = Buffer.from(k.material.base64, 'base64').length;
      if (isSymmetricSpec(k.spec) && bytes !== materialLength(k.spec)) issue(`${k.spec} material is ${materialLength(k.spec)} bytes, not ${bytes}`, 'material');
    }
    const tagKeys = Object.keys(k.tags);
    if (tagKeys.length > MAX_TAGS_PER_KEY) issue(`at most ${MAX_TAGS_PER_KEY} tags`, 'tags');
    for (const key of tagKeys) {
      try {
        validateTag(key, k.tags[key] ?? '');
      } catch (error) {
        issue(error instanceof Error ? error.message : String(error), 'tags');
      }
    }
  });

const accessKeySchema = z
  .object({
    id: z.string().refine(isAccessKeyIdFormat, 'an access key id is "LTAI" and 12 to 40 letters or digits'),
    secret: z.string().min(MIN_SEED_SECRET_LENGTH).max(128).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces'),
    role: z.enum(['admin', 'key-user']).default('key-user'),
    instances: z.array(z.string().min(1)).default([]),
    description: z.string().max(1024).default(''),
  })
  .strict();

const documentSchema = z
  .object({
    instances: z.array(instanceSchema).default([]),
    keys: z.array(keySchema).default([]),
    accessKeys: z.array(accessKeySchema).default([]),
  })
  .strict()
  .superRefine((d, ctx) => {
    const duplicates = (values: string[], path: string, what: string) => {
      const seen = new Set<string>();
      for (const v of values) {
        const normal = v.toLowerCase();
        if (seen.has(normal)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${what} ${v} is declared twice`, path: [path] });
        seen.add(normal);
      }
    };
    duplicates(d.instances.map((i) => i.name), 'instances', 'instance');
    duplicates(d.keys.flatMap((k) => (k.id ? [k.id] : [])), 'keys', 'key id');
    duplicates(d.keys.flatMap((k) => k.aliases), 'keys', 'alias');
    duplicates(d.accessKeys.map((a) => a.id), 'accessKeys', 'access key');
  });

/** A seed file that does not describe a valid rig; `issues` name each problem with its path. */
export class SeedFileError extends Error {
  override readonly name = 'SeedFileError';
  constructor(readonly issues: string[]) {
    super(`invalid seed file:\n  ${issues.join('\n  ')}`);
  }
}

/**
 * Validates a decoded seed document and fills in defaults (tier SOFTWARE, spec Aliyun_AES_256,
 * the spec's default usage, origin Aliyun_KMS).
 * @throws SeedFileError listing every problem found.
 */
export function parseSeedDocument(input: unknown): SeedDocument {
  const parsed = documentSchema.safeParse(input ?? {});
  if (!parsed.success) {
    throw new SeedFileError(parsed.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(file)'}: ${i.message}`));
  }
  const d = parsed.data;
  return {
    instances: d.instances,
    accessKeys: d.accessKeys,
    keys: d.keys.map((k) => ({
      id: k.id,
      tier: k.tier,
      instance: k.instance,
      spec: k.spec,
      usage: k.usage ?? defaultKeyUsage(k.spec),
      origin: k.origin,
      description: k.description,
      tags: Object.entries(k.tags).map(([key, value]) => ({ key, value })),
      aliases: k.aliases,
      rotation: k.rotation === undefined ? undefined : 'interval' in k.rotation ? { enabled: true, intervalSeconds: parseRotationInterval(k.rotation.interval) } : { enabled: false },
      material: k.material === undefined ? undefined : 'base64' in k.material ? { kind: 'base64', bytes: Buffer.from(k.material.base64, 'base64') } : { kind: 'file', path: k.material.file },
    })),
  };
}

/** What applying one item of a seed did. */
export type SeedStatus = 'created' | 'updated' | 'unchanged' | 'conflict' | 'failed';

export interface SeedOutcome {
  kind: 'instance' | 'key' | 'alias' | 'access-key';
  /** The item's name: instance name, key id, alias name, access key id. */
  name: string;
  status: SeedStatus;
  /** What changed, or why it conflicts or failed (never material or secrets). */
  detail?: string;
}

/** Whether an apply left everything as declared: no conflicts, no failures. */
export const seedApplied = (outcomes: readonly SeedOutcome[]): boolean => outcomes.every((o) => o.status !== 'conflict' && o.status !== 'failed');
