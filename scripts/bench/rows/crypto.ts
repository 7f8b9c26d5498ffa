import { type BenchContext, HELLO, TIER_NAME, type Tier } from '../context.js';
import type { Target } from '../targets.js';

/** Encrypt, Decrypt (64 B and 4 KiB) and GenerateDataKey per tier, and the ACS3-signed Encrypt. */

export async function cryptoRows(ctx: BenchContext, tier: Tier): Promise<void> {
  const hsmTier = tier !== 'sw';
  const encDecTarget = (): Target => (hsmTier ? { kind: 'ratio', min: 0.25, of: HELLO, p99MaxMs: 15 } : { kind: 'ratio', min: 0.3, of: HELLO });
  for (const size of [64, 4096]) {
    const label = size === 64 ? '64 B' : '4 KiB';
    const suffix = size === 64 ? '64' : '4k';
    for (const action of ['Encrypt', 'Decrypt'] as const) {
      const id = `${action.toLowerCase()}-${tier}-${suffix}`;
      if (!ctx.wants(id)) continue;
      const name = `${action} ${label}, ${TIER_NAME[tier]} (${ctx.options.keysPerTier} keys)`;
      const of64 = size === 64 ? undefined : ctx.rowRate(`${action.toLowerCase()}-${tier}-64`, '64 B row');
      const target: Target = size === 64 ? encDecTarget() : of64 ? { kind: 'ratio', min: 0.8, of: of64.name } : encDecTarget();
      await ctx.guard(id, name, () => cryptoRow(ctx, tier, action, size, id, name, target, of64));
    }
  }
  const gdkId = `generate-data-key-${tier}`;
  if (ctx.wants(gdkId)) {
    const name = `GenerateDataKey (AES_256), ${TIER_NAME[tier]}`;
    const target: Target = { kind: 'ratio', min: 0.2, of: HELLO };
    await ctx.guard(gdkId, name, async () => {
      const keys = await ctx.keys(tier);
      if (!keys) ctx.notAvailable(gdkId, name, target, ctx.unavailable.get(tier) ?? 'unknown');
      else await ctx.rpcRow({ id: gdkId, name, action: 'GenerateDataKey', params: (i) => ({ KeyId: keys[i % keys.length]! }), target });
    });
  }
}

async function cryptoRow(
  ctx: BenchContext,
  tier: Tier,
  action: 'Encrypt' | 'Decrypt',
  size: number,
  id: string,
  name: string,
  target: Target,
  of64: { name: string; rate: number } | undefined,
): Promise<void> {
  const keys = await ctx.keys(tier);
  if (!keys) {
    ctx.notAvailable(id, name, target, ctx.unavailable.get(tier) ?? 'unknown');
    return;
  }
  const plaintext = 'x'.repeat(size);
  const ratioTo = of64 ? { ratioTo: of64 } : {};
  if (action === 'Encrypt') {
    await ctx.rpcRow({ id, name, action, params: (i) => ({ KeyId: keys[i % keys.length]!, Plaintext: plaintext }), target, ...ratioTo });
  } else {
    const blobs = (await ctx.blobs(tier, size))!;
    await ctx.rpcRow({ id, name, action, params: (i) => ({ CiphertextBlob: blobs[i % blobs.length]! }), target, ...ratioTo });
  }
}

/** The same Encrypt as encrypt-hsm-64, signed with ACS3-HMAC-SHA256 (the newer SDKs' default). */
export async function acs3Row(ctx: BenchContext): Promise<void> {
  const id = 'encrypt-hsm-64-acs3';
  const name = `Encrypt 64 B, ${TIER_NAME.hsm}, ACS3-HMAC-SHA256`;
  await ctx.guard(id, name, async () => {
    const keys = (await ctx.keys('hsm'))!;
    const plaintext = 'x'.repeat(64);
    await ctx.rpcRow({
      id,
      name,
      action: 'Encrypt',
      scheme: 'ACS3-HMAC-SHA256',
      params: (i) => ({ KeyId: keys[i % keys.length]!, Plaintext: plaintext }),
      target: { kind: 'ratio', min: 0.25, of: HELLO, p99MaxMs: 15 },
    });
  });
}
