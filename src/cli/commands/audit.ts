import type { Command } from 'commander';
import { withLocalKms } from '../local-kms.js';
import { print } from '../output.js';

/** The use cases, loaded when a verb runs (cli/kms.ts: start-up stays light). */
const load = () => import('../../services/audit-trail.js');

const RELATIVE = /^(\d+)\s*(s|m|h|d)$/;
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `--since 2h`, `--since 30m`, or an ISO 8601 date. */
export function parseSince(text: string, now = Date.now()): Date {
  const relative = RELATIVE.exec(text.trim());
  if (relative) return new Date(now - Number(relative[1]) * UNIT_MS[relative[2] as keyof typeof UNIT_MS]);
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) throw new Error(`not a time: ${text} (use an ISO 8601 date, or 30m, 2h, 7d)`);
  return at;
}

async function* mapRows<T, U>(rows: AsyncIterable<T>, map: (row: T) => U): AsyncGenerator<U> {
  for await (const row of rows) yield map(row);
}

export function register(program: Command): void {
  const audit = program
    .command('audit')
    .description('the audit trail: hash-chained events, digests signed in the HSM (README, Audit trail)');

  audit
    .command('list')
    .description('events, oldest first: by key, action, access key and time')
    .option('--key <keyId>', 'only events of this key')
    .option('--action <action>', 'only this action (e.g. Encrypt, CreateKey)')
    .option('--access-key <accessKeyId>', 'only calls signed with this access key')
    .option('--since <time>', 'from this time: ISO 8601, or 30m, 2h, 7d ago')
    .option('--until <time>', 'before this time')
    .option('--limit <n>', 'at most this many', '1000')
    .option('--table', 'print a table instead of JSON')
    .action(async (o: { key?: string; action?: string; accessKey?: string; since?: string; until?: string; limit: string; table?: boolean }) => {
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new Error('--limit must be a positive integer');
      const filter = {
        keyId: o.key,
        action: o.action,
        accessKeyId: o.accessKey,
        since: o.since ? parseSince(o.since) : undefined,
        until: o.until ? parseSince(o.until) : undefined,
        limit,
      };
      const { listAuditEvents } = await load();
      await withLocalKms(async (kms) => {
        const events = await listAuditEvents(kms.deps, filter);
        print(
          events.map((e) => ({
            Time: e.at.toISOString(),
            Action: e.action,
            Result: e.resultCode,
            KeyId: e.keyId ?? '',
            KeyVersionId: e.keyVersionId ?? '',
            AccessKeyId: e.accessKeyId ?? '',
            SourceIp: e.sourceIp ?? '',
            RequestId: e.requestId ?? '',
            ...(o.table ? {} : { Detail: e.detail, Chain: e.chainId, Seq: e.seq }),
          })),
          o,
        );
      });
    });

  audit
    .command('verify')
    .description('recompute every chain and check every digest signature with the HSM key; exit 1 naming the first broken row')
    .action(async () => {
      const { verifyAuditTrail } = await load();
      await withLocalKms(async (kms) => {
        const result = await verifyAuditTrail(kms.deps);
        print({
          Verified: result.ok,
          Chains: result.chains.length,
          Events: result.events,
          Digests: result.digests,
          UnsignedEvents: result.chains.reduce((n, c) => n + c.unsignedEvents, 0),
          // Chains with digests whose newest is held in the HSM (the rest predate anchors, or have no digest yet).
          AnchoredChains: result.chains.filter((c) => c.anchored).length,
          ...(result.firstProblem ? { FirstProblem: result.firstProblem } : {}),
        });
        if (!result.ok) throw new Error(`audit trail verification FAILED: ${result.firstProblem}`);
      });
    });

  audit
    .command('export')
    .description('every event as stored, one JSON object per line, chain by chain in order (detail as its hashed text)')
    .option('--digests', 'the signed digests instead (signature in base64), to check elsewhere with `kms audit public-key`')
    .action(async (o: { digests?: boolean }) => {
      const { exportAuditTrail, exportAuditDigests } = await load();
      await withLocalKms(async (kms) => {
        const lines = o.digests
          ? mapRows(exportAuditDigests(kms.deps), (d) => ({ ...d, firstAt: d.firstAt.toISOString(), lastAt: d.lastAt.toISOString(), createdAt: d.createdAt.toISOString(), signature: d.signature.toString('base64') }))
          : mapRows(exportAuditTrail(kms.deps), (row) => ({ ...row, at: row.at.toISOString() }));
        for await (const line of lines) {
          if (!process.stdout.write(`${JSON.stringify(line)}\n`)) await new Promise((resolve) => process.stdout.once('drain', resolve));
        }
      });
    });

  audit
    .command('public-key')
    .description("the HSM's audit digest public key (PEM): digests verify with it as ECDSA P-256 over SHA-256 of their canonical form")
    .action(async () => {
      const { auditDigestPublicKeysPem } = await load();
      await withLocalKms(async (kms) => {
        for (const { pem } of await auditDigestPublicKeysPem(kms.deps)) process.stdout.write(pem);
      });
    });

  audit
    .command('digest')
    .description('sign a digest of every chain that grew, now (the worker does it every KMS_AUDIT_DIGEST_MINUTES)')
    .action(async () => {
      const { createAuditDigests } = await load();
      await withLocalKms(async (kms) => {
        const made = await createAuditDigests(kms.deps);
        print(made.map((d) => ({ Chain: d.chainId, Digest: d.digestSeq, FirstSeq: d.firstSeq, LastSeq: d.lastSeq, Events: d.eventCount })));
      });
    });
}
