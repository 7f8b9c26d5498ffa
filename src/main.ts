import type { Logger } from 'pino';
import { type RunningServer, startHttpServer } from './api/app.js';
import type { KmsConfig } from './config.js';
import { type Kms, createKms } from './kms.js';
import { ensureAdminCredentials } from './services/bootstrap.js';

export interface RunningKms {
  kms: Kms;
  http: RunningServer;
  /** Where clients on this host reach it (a wildcard listen address becomes the loopback one). */
  endpoint: string;
  /** The address it listens on, as bound (`0.0.0.0:8080` in the container). */
  listening: string;
  credentialsFile: string;
  stop(): Promise<void>;
}

/** `kms serve`: the composition root, the admin credentials on first start, and the HTTP server. */
export async function runServer(config: KmsConfig, options: { logger?: Logger } = {}): Promise<RunningKms> {
  const kms = await createKms(config, options.logger ? { logger: options.logger } : {});
  let http: RunningServer | undefined;
  try {
    http = await startHttpServer(kms, config.host, config.port);
    const endpoint = clientEndpoint(config.host, http.port);
    const listening = listenAddress(config.host, http.port);
    const { file } = await ensureAdminCredentials(kms.deps, endpoint);
    kms.deps.logger.info({ listening, endpoint }, 'hsm-kms listening');
    const running = http;
    return {
      kms,
      http: running,
      endpoint,
      listening,
      credentialsFile: file,
      async stop() {
        await running.close();
        await kms.close();
      },
    };
  } catch (error) {
    // A start-up that fails after the listener is up must not leave it answering every request
    // with 500 ("Cannot use a pool after calling end"): close it, then the rest, then report.
    await http?.close().catch(() => undefined);
    await kms.close();
    throw error;
  }
}

/**
 * The endpoint a client on this host uses (credentials.json, the banner): a wildcard listen
 * address (`0.0.0.0`, `::`, as in the container) is reached through the loopback address.
 */
export function clientEndpoint(host: string, port: number): string {
  if (host === '0.0.0.0' || host === '' || host === '::' || host === '[::]') return `127.0.0.1:${port}`;
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Where a server listens, for people: the address as bound — a rig on 0.0.0.0 is reachable from
 * the network, whatever address clients on this host use — and that one when it differs.
 */
export function describeListening(server: Pick<RunningKms, 'listening' | 'endpoint'>): string {
  return server.listening === server.endpoint ? server.listening : `${server.listening} (clients on this host: ${server.endpoint})`;
}

/** The address as bound: `0.0.0.0:8080`, `[::1]:8080`. */
export function listenAddress(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host || '0.0.0.0'}:${port}`;
}

/**
 * Stops `stop` once on SIGINT/SIGTERM, then exits; a second signal exits at once. Returns the
 * same graceful stop for other triggers (the cluster primary's message), which never counts
 * as a second signal.
 */
export function stopOnSignals(stop: () => Promise<void>): () => void {
  let stopping = false;
  const stopOnce = (reason: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\n${reason}: stopping…\n`);
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`error while stopping: ${error instanceof Error ? error.message : String(error)}\n`);
        process.exit(1);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopOnce(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => stopOnce('asked to stop');
}
