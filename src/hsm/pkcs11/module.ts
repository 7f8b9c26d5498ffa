import pkcs11js from 'pkcs11js';
import { KmsError, unavailable } from '../../domain/errors.js';
import { pkcs11Code } from './errors.js';

/**
 * One loaded PKCS#11 library per process: C_Initialize is per process, so several adapters (a
 * server and its tests, or a restart inside one process) share it and the last close finalizes
 * it. A restart (`restartModule`, for a stale token view) finalizes and initializes it again
 * for all of them; `generation` tells each adapter its handles are gone.
 */
interface LoadedModule {
  p11: pkcs11js.PKCS11;
  refs: number;
  /** Moves on every restart: what adapters compare the handles they hold against. */
  generation: number;
  /** Operations under way (`useModule`): a restart waits until there are none. */
  busy: number;
  /** Told when `busy` drops to 0. */
  drained: Array<() => void>;
  /** The restart under way: new operations wait for it. */
  restarting: Promise<boolean> | undefined;
  /** When the last restart ended (performance.now()); undefined before any. */
  restartedAt: number | undefined;
}
const loaded = new Map<string, LoadedModule>();

export function acquireModule(modulePath: string): pkcs11js.PKCS11 {
  const existing = loaded.get(modulePath);
  if (existing) {
    existing.refs += 1;
    return existing.p11;
  }
  const p11 = new pkcs11js.PKCS11();
  try {
    p11.load(modulePath);
  } catch {
    throw unavailable(`Cannot load the PKCS#11 module at ${modulePath}.`);
  }
  try {
    // Async calls run on libuv's thread pool, so the library must lock: with NULL init args
    // SoftHSM2 assumes a single thread and corrupts its heap under concurrent calls
    // (measured: malloc_consolidate aborts at 4 concurrent C_EncryptAsync).
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (error) {
    if (pkcs11Code(error) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw error;
  }
  loaded.set(modulePath, { p11, refs: 1, generation: 0, busy: 0, drained: [], restarting: undefined, restartedAt: undefined });
  return p11;
}

/** The restart count of the loaded module (0 before any). */
export function moduleGeneration(modulePath: string): number {
  return loaded.get(modulePath)?.generation ?? 0;
}

/**
 * Runs one adapter operation on the loaded module: it waits for a restart under way, and a
 * restart waits for it to end. An operation holds object and session handles from its start to
 * its end; after a restart those numbers may name other objects, so no operation may span one.
 */
export async function useModule<T>(modulePath: string, operation: () => Promise<T>): Promise<T> {
  const entry = loaded.get(modulePath);
  if (!entry) return operation();
  while (entry.restarting) await entry.restarting;
  entry.busy += 1;
  try {
    return await operation();
  } finally {
    entry.busy -= 1;
    if (entry.busy === 0) for (const wake of entry.drained.splice(0)) wake();
  }
}

/** How long a restart waits for the operations under way before it gives up. */
const RESTART_DRAIN_MS = 5_000;

/**
 * Finalizes and initializes the loaded module again: every session, login and handle of the
 * process is gone, and the library reads its tokens afresh. For a library whose view of a token
 * went stale for good (SoftHSM2 2.6.1 stops re-reading its token directory once it met a
 * token.object that another process was rewriting: Pkcs11Hsm.tokenViewIntact). One at a time;
 * waits for the operations under way (at most RESTART_DRAIN_MS, then gives up and returns
 * false). Never call it from inside `useModule`.
 */
export function restartModule(modulePath: string): Promise<boolean> {
  const entry = loaded.get(modulePath);
  if (!entry) return Promise.resolve(false);
  if (!entry.restarting) {
    const restart = restartWhenDrained(entry);
    entry.restarting = restart;
    void restart.finally(() => {
      if (entry.restarting === restart) entry.restarting = undefined;
    });
  }
  return entry.restarting;
}

async function restartWhenDrained(entry: LoadedModule): Promise<boolean> {
  if (entry.busy > 0) {
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      new Promise<boolean>((resolve) => entry.drained.push(() => resolve(true))),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), RESTART_DRAIN_MS))),
    ]);
    clearTimeout(timer);
    if (!drained) return false;
  }
  try {
    entry.p11.C_Finalize();
  } catch {
    // Not initialized any more is what we want.
  }
  // Every handle is gone now, whether or not the library comes back at once.
  entry.generation += 1;
  entry.restartedAt = performance.now();
  return initializeAgain(entry.p11);
}

/** How long ago the loaded module last restarted, in ms (Infinity: never). */
export function msSinceRestart(modulePath: string): number {
  const at = loaded.get(modulePath)?.restartedAt;
  return at === undefined ? Number.POSITIVE_INFINITY : performance.now() - at;
}

/** C_Initialize as acquireModule makes it; true if the library is initialized afterwards. */
export function initializeAgain(p11: pkcs11js.PKCS11): boolean {
  try {
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    return true;
  } catch (error) {
    return pkcs11Code(error) === pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED;
  }
}

export function releaseModule(modulePath: string): void {
  const entry = loaded.get(modulePath);
  if (!entry) return;
  entry.refs -= 1;
  if (entry.refs > 0) return;
  loaded.delete(modulePath);
  try {
    entry.p11.C_Finalize();
  } catch {
    // Finalizing is best effort at shutdown.
  }
}

/**
 * No initialized token carries the label. Either none does (`kms hsm init` never ran), or this
 * process read the token while another process was rewriting its token.object (every login
 * does: SoftHSM2 2.6.1 shows the token uninitialized or fails its C_GetTokenInfo then, found by
 * a fresh-clone run starting `kms serve` beside a busy test server), which a re-read cures.
 */
export class TokenNotFound extends KmsError {
  constructor(label: string) {
    super('ServiceUnavailableTemporary', `Service Unavailable Temporary. No initialized token labelled "${label}" was found; run \`kms hsm init\`.`, 'unavailable');
  }
}

/** The slot whose initialized token carries `label` (labels are space-padded to 32 bytes). */
export function findTokenSlot(p11: pkcs11js.PKCS11, label: string): pkcs11js.Handle {
  for (const slot of p11.C_GetSlotList(true)) {
    const info = p11.C_GetTokenInfo(slot);
    if (info.label.trim() === label && (info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) !== 0) return slot;
  }
  throw new TokenNotFound(label);
}

export function login(p11: pkcs11js.PKCS11, session: pkcs11js.Handle, pin: string): void {
  try {
    p11.C_Login(session, pkcs11js.CKU_USER, pin);
  } catch (error) {
    const code = pkcs11Code(error);
    if (code === pkcs11js.CKR_USER_ALREADY_LOGGED_IN) return;
    if (code === pkcs11js.CKR_PIN_INCORRECT || code === pkcs11js.CKR_PIN_INVALID || code === pkcs11js.CKR_PIN_LEN_RANGE) {
      // The PIN itself never appears in an error.
      throw unavailable('The HSM refused the user PIN.');
    }
    throw error;
  }
}
