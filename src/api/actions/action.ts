import type { z } from 'zod';
import type { Caller } from '../../services/context.js';
import type { KmsServices } from '../../kms.js';

/**
 * Who may call an action: `admin` actions need an admin access key; `use` (crypto) and
 * `read` actions are open to key-users too (limited to their instances by the services).
 */
export type ActionAccess = 'admin' | 'use' | 'read';

export interface ActionContext {
  kms: KmsServices;
  caller: Caller;
  requestId: string;
  /** The `x-kms-idempotency-key` header, as sent (services/idempotency.ts checks it). */
  idempotencyKey?: string | undefined;
}

/** One RPC action: its parameter schema and a handler that calls one use case and shapes the answer. */
export interface Action<S extends z.ZodTypeAny = z.ZodTypeAny> {
  access: ActionAccess;
  params: S;
  handle(params: z.infer<S>, ctx: ActionContext): Promise<Record<string, unknown>>;
}

export function defineAction<S extends z.ZodTypeAny>(action: Action<S>): Action<S> {
  return action;
}

export type ActionTable = Readonly<Record<string, Action>>;
