import type { Queryable } from './db.js';

/** One line of the audit trail. `detail` must never hold key material, PINs or secrets. */
export interface AuditEvent {
  requestId?: string | undefined;
  accessKeyId?: string | undefined;
  action: string;
  keyId?: string | undefined;
  detail?: Record<string, unknown>;
}

export async function recordAudit(db: Queryable, e: AuditEvent): Promise<void> {
  await db.query(
    'INSERT INTO audit_events (request_id, access_key_id, action, key_id, detail) VALUES ($1,$2,$3,$4,$5)',
    [e.requestId ?? null, e.accessKeyId ?? null, e.action, e.keyId ?? null, JSON.stringify(e.detail ?? {})],
  );
}

export async function listAudit(
  db: Queryable,
  filter: { keyId?: string; action?: string },
): Promise<Array<AuditEvent & { at: Date }>> {
  const { rows } = await db.query<{
    at: Date;
    request_id: string | null;
    access_key_id: string | null;
    action: string;
    key_id: string | null;
    detail: Record<string, unknown>;
  }>(
    `SELECT at, request_id, access_key_id, action, key_id, detail FROM audit_events
     WHERE ($1::text IS NULL OR key_id = $1) AND ($2::text IS NULL OR action = $2) ORDER BY id`,
    [filter.keyId ?? null, filter.action ?? null],
  );
  return rows.map((r) => ({
    at: r.at,
    requestId: r.request_id ?? undefined,
    accessKeyId: r.access_key_id ?? undefined,
    action: r.action,
    keyId: r.key_id ?? undefined,
    detail: r.detail,
  }));
}
