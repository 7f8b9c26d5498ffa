import type { IncomingMessage, ServerResponse } from 'node:http';
import type { KmsServices } from '../../kms.js';
import { type OpsSources, type QueueOverview, opsOverview } from '../../services/ops-dashboard.js';
import type { Caller } from '../../services/context.js';
import { JOB_STATES, oldestDueLagSeconds, probeHsm } from '../../observability/scrape-gauges.js';
import { requestRateHistory } from '../../observability/request-rates.js';
import { recordAudit } from '../../store/audit.js';
import { readBody } from '../http/body.js';
import { newRequestId } from '../http/reply.js';
import type { RouteHandler, RouteTable } from '../route.js';
import { CONSOLE_SCRIPT, CONSOLE_STYLES } from './assets.js';
import { dashboardPage, panelsFragment, signInPage } from './page.js';
import {
  clearedSessionCookie,
  isAllowedHost,
  isSameOriginPost,
  redirect,
  sendConsole,
  sessionCookie,
  sessionIdOf,
  wantsSecureCookie,
} from './security.js';
import { ConsoleSessions } from './sessions.js';
import { verifyConsoleSignIn } from './sign-in.js';

const HTML = 'text/html;charset=utf-8';
const FORM_LIMIT = 8 * 1024;

const REFUSALS = {
  'wrong-credentials': { status: 401, message: 'Sign-in refused: the access key id or secret is wrong.' },
  'key-user': { status: 403, message: 'Sign-in refused: this access key is a key-user. The console is for admin access keys only.' },
  disabled: { status: 403, message: 'Sign-in refused: this access key is disabled.' },
} as const;

/**
 * The ops dashboard's paths (README, "Operations: dashboard"): the page (sign-in form when
 * not signed in), sign-in and sign-out (form POSTs, same-origin only), the panels fragment
 * and JSON the page's script refreshes from, and the script and stylesheet themselves.
 */
export function consoleRoutes(kms: KmsServices): RouteTable {
  const { config, logger } = kms.deps;
  const sessions = new ConsoleSessions(kms.redis, config.jobs.queuePrefix, config.console.sessionTtlSeconds);
  const sources: OpsSources = {
    requestRateHistory: (seconds) => requestRateHistory(kms.redis, config.jobs.queuePrefix, seconds),
    queues: () => Promise.all(Object.values(kms.jobs.queues).map((q) => queueOverview(q))),
    probeHsm: () => probeHsm(kms.deps.hsm),
  };

  /** The signed-in admin, or undefined (no cookie, expired, or the key no longer an enabled admin). */
  const signedIn = async (req: IncomingMessage): Promise<Caller | undefined> => {
    const id = sessionIdOf(req);
    if (!id) return undefined;
    const session = await sessions.find(id);
    if (!session) return undefined;
    // Checked on every request: disabling, deleting or demoting the key ends its sessions.
    const credential = await kms.credentials.lookup(session.accessKeyId).catch(() => undefined);
    if (!credential || credential.accessKey.status !== 'Enabled' || credential.accessKey.role !== 'admin') {
      await sessions.end(id);
      return undefined;
    }
    return { accessKeyId: session.accessKeyId, role: 'admin', instanceIds: null, sourceIp: req.socket.remoteAddress };
  };

  const page: RouteHandler = async (req, res) => {
    const caller = await signedIn(req);
    if (!caller) return sendConsole(res, 200, HTML, signInPage());
    sendConsole(res, 200, HTML, dashboardPage(await opsOverview(kms.deps, sources, caller), caller.accessKeyId));
  };

  const signIn: RouteHandler = async (req, res) => {
    if (!isSameOriginPost(req)) return refuseCrossOrigin(res);
    const form = new URLSearchParams((await readBody(req, FORM_LIMIT)).toString('utf8'));
    const accessKeyId = (form.get('accessKeyId') ?? '').trim();
    const outcome = await verifyConsoleSignIn(kms.credentials, accessKeyId, form.get('accessKeySecret') ?? '');
    const requestId = newRequestId();
    const sourceIp = req.socket.remoteAddress;
    if (!outcome.ok) {
      const refusal = REFUSALS[outcome.reason];
      logger.info({ requestId, reason: outcome.reason, sourceIp }, 'console sign-in refused');
      // Audited once the secret is proven (an unknown caller cannot fill the trail).
      if (outcome.reason !== 'wrong-credentials') {
        await recordAudit(kms.deps.db, { requestId, accessKeyId: outcome.accessKeyId, sourceIp, action: 'ConsoleSignIn', resultCode: 'Forbidden.NoPermission', detail: { reason: outcome.reason } });
      }
      return sendConsole(res, refusal.status, HTML, signInPage(refusal.message));
    }
    const id = await sessions.create(outcome.accessKeyId, kms.deps.clock.now());
    await recordAudit(kms.deps.db, { requestId, accessKeyId: outcome.accessKeyId, sourceIp, action: 'ConsoleSignIn' });
    logger.info({ requestId, accessKeyId: outcome.accessKeyId, sourceIp }, 'console sign-in');
    redirect(res, '/console', { 'set-cookie': sessionCookie(id, sessions.ttlSeconds, wantsSecureCookie(req, config.console.secureCookie)) });
  };

  const signOut: RouteHandler = async (req, res) => {
    if (!isSameOriginPost(req)) return refuseCrossOrigin(res);
    const id = sessionIdOf(req);
    const caller = await signedIn(req);
    if (id) await sessions.end(id);
    if (caller) await recordAudit(kms.deps.db, { requestId: newRequestId(), accessKeyId: caller.accessKeyId, sourceIp: caller.sourceIp, action: 'ConsoleSignOut' });
    redirect(res, '/console', { 'set-cookie': clearedSessionCookie(wantsSecureCookie(req, config.console.secureCookie)) });
  };

  const withSession = (answer: (caller: Caller, res: ServerResponse) => Promise<void>): RouteHandler => async (req, res) => {
    const caller = await signedIn(req);
    if (!caller) return sendConsole(res, 401, 'text/plain;charset=utf-8', 'Not signed in.\n');
    await answer(caller, res);
  };

  const routes: RouteTable = {
    '/console': { GET: page },
    '/console/sign-in': { POST: signIn },
    '/console/sign-out': { POST: signOut },
    '/console/panels': { GET: withSession(async (caller, res) => sendConsole(res, 200, HTML, panelsFragment(await opsOverview(kms.deps, sources, caller)))) },
    '/console/overview.json': { GET: withSession(async (caller, res) => sendConsole(res, 200, 'application/json;charset=utf-8', JSON.stringify(await opsOverview(kms.deps, sources, caller)))) },
    '/console/console.js': { GET: (_req, res) => sendConsole(res, 200, 'text/javascript;charset=utf-8', CONSOLE_SCRIPT) },
    '/console/console.css': { GET: (_req, res) => sendConsole(res, 200, 'text/css;charset=utf-8', CONSOLE_STYLES) },
  };
  return Object.fromEntries(
    Object.entries(routes).map(([path, methods]) => [
      path,
      Object.fromEntries(Object.entries(methods).map(([method, handler]) => [method, onAllowedHost(config.allowedHosts, handler)])),
    ]),
  );
}

function onAllowedHost(allowed: readonly string[], handler: RouteHandler): RouteHandler {
  return (req, res) =>
    isAllowedHost(req, allowed) ? handler(req, res) : sendConsole(res, 400, 'text/plain;charset=utf-8', 'Refused: this host name is not served (KMS_ALLOWED_HOSTS).\n');
}

function refuseCrossOrigin(res: ServerResponse): void {
  sendConsole(res, 403, 'text/plain;charset=utf-8', 'Refused: a console form must be posted from this console (Origin check).\n');
}

async function queueOverview(queue: KmsServices['jobs']['queues'][keyof KmsServices['jobs']['queues']]): Promise<QueueOverview> {
  try {
    const counts = await queue.getJobCounts(...JOB_STATES);
    return {
      name: queue.name,
      waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0),
      active: counts.active ?? 0,
      delayed: counts.delayed ?? 0,
      failed: counts.failed ?? 0,
      lagSeconds: await oldestDueLagSeconds(queue),
    };
  } catch {
    return { name: queue.name, waiting: 0, active: 0, delayed: 0, failed: 0, lagSeconds: undefined };
  }
}
