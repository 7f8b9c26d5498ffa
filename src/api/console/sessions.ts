import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';

/** What a console session remembers: who signed in. Nothing secret. */
export interface ConsoleSession {
  accessKeyId: string;
  createdAt: string;
}

/**
 * Console sign-ins in Redis, shared by every server process, each living `ttlSeconds`. The
 * cookie holds a random 256-bit id; Redis holds only its SHA-256, so a copy of Redis gives
 * nobody a cookie that works.
 */
export class ConsoleSessions {
  constructor(
    private readonly redis: Redis,
    /** KMS_QUEUE_PREFIX: one namespace per deployment. */
    private readonly prefix: string,
    readonly ttlSeconds: number,
  ) {}

  /** @returns the new session's id (the cookie's value) */
  async create(accessKeyId: string, now: Date): Promise<string> {
    const id = randomBytes(32).toString('base64url');
    const session: ConsoleSession = { accessKeyId, createdAt: now.toISOString() };
    await this.redis.set(this.key(id), JSON.stringify(session), 'EX', this.ttlSeconds);
    return id;
  }

  async find(id: string): Promise<ConsoleSession | undefined> {
    if (!/^[\w-]{43}$/.test(id)) return undefined;
    const stored = await this.redis.get(this.key(id));
    return stored ? (JSON.parse(stored) as ConsoleSession) : undefined;
  }

  async end(id: string): Promise<void> {
    if (/^[\w-]{43}$/.test(id)) await this.redis.del(this.key(id));
  }

  private key(id: string): string {
    return `${this.prefix}:console:session:${createHash('sha256').update(id).digest('hex')}`;
  }
}
