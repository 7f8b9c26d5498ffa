import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccessKey, setAccessKeyStatus } from '../../src/services/access.js';
import { systemCaller } from '../../src/services/context.js';
import { consoleRequest, consoleSignIn, sessionCookieOf } from '../helpers/console.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type Credentials, type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 17, the ops dashboard over plain HTTP: security headers on every answer, the session
 * cookie's flags, the Origin check of its form POSTs, refusals of key-users and wrong
 * secrets, sessions ended by sign-out or by disabling the key, and no secret in the page.
 * (The real-browser test is console-browser.test.ts.)
 */
let server: TestServer;
let call: CallApi;
let keyUser: Credentials;

beforeAll(async () => {
  server = await startServer({ env: { KMS_USAGE_FLUSH_MS: '200' } });
  call = openApiClient(server.endpoint, server.admin);
  const created = await createAccessKey(server.kms.deps, { role: 'key-user' }, systemCaller);
  keyUser = { accessKeyId: created.accessKeyId, accessKeySecret: created.accessKeySecret };
});

afterAll(async () => {
  await server?.stop();
});

function expectSecurityHeaders(headers: Record<string, unknown>): void {
  const csp = String(headers['content-security-policy']);
  expect(csp).toContain("default-src 'self'");
  expect(csp).toContain("script-src 'self'");
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).not.toContain('unsafe-inline');
  expect(headers['x-content-type-options']).toBe('nosniff');
  expect(headers['x-frame-options']).toBe('DENY');
  expect(headers['cache-control']).toBe('no-store');
}

describe('/console signed out', () => {
  it('shows the sign-in form with the security headers, and no inline script', async () => {
    const r = await consoleRequest(server.endpoint, 'GET', '/console');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/html/);
    expectSecurityHeaders(r.headers);
    expect(r.body).toContain('action="/console/sign-in"');
    expect(r.body).not.toMatch(/<script(?![^>]*\bsrc=)/i);
    expect(r.headers['set-cookie']).toBeUndefined();
  });

  it('refuses the panels and the JSON without a session (401), and with a made-up cookie', async () => {
    for (const path of ['/console/panels', '/console/overview.json']) {
      expect((await consoleRequest(server.endpoint, 'GET', path)).status).toBe(401);
      const forged = await consoleRequest(server.endpoint, 'GET', path, { headers: { cookie: `kms_console=${'A'.repeat(43)}` } });
      expect(forged.status).toBe(401);
      expectSecurityHeaders(forged.headers);
    }
  });
});

describe('signing in', () => {
  it('an admin key gets a 303 and a session cookie HttpOnly, SameSite=Strict, Path=/console, not Secure over plain HTTP', async () => {
    const r = await consoleSignIn(server.endpoint, server.admin);
    expect(r.status).toBe(303);
    expect(r.headers.location).toBe('/console');
    expectSecurityHeaders(r.headers);
    const cookie = r.headers['set-cookie']?.find((c) => c.startsWith('kms_console='));
    expect(cookie).toBeDefined();
    const flags = cookie!.split(';').map((f) => f.trim().toLowerCase());
    expect(flags).toContain('httponly');
    expect(flags).toContain('samesite=strict');
    expect(flags).toContain('path=/console');
    expect(flags.some((f) => f.startsWith('max-age=') && Number(f.slice(8)) > 0)).toBe(true);
    expect(flags).not.toContain('secure');
    expect(cookie).not.toContain(server.admin.accessKeySecret);
  });

  it('behind a TLS proxy (X-Forwarded-Proto: https) the cookie is Secure', async () => {
    const r = await consoleSignIn(server.endpoint, server.admin, { 'x-forwarded-proto': 'https' });
    expect(r.status).toBe(303);
    expect(r.headers['set-cookie']?.[0]?.split(';').map((f) => f.trim())).toContain('Secure');
  });

  it('a key-user is refused with a clear message and no cookie', async () => {
    const r = await consoleSignIn(server.endpoint, keyUser);
    expect(r.status).toBe(403);
    expect(r.body).toContain('key-user');
    expect(r.body).toContain('admin access keys only');
    expect(r.headers['set-cookie']).toBeUndefined();
    expect(r.body).not.toContain(keyUser.accessKeySecret);
  });

  it('a wrong secret and an unknown id get the same refusal, and the typed secret is not echoed', async () => {
    const wrong = await consoleSignIn(server.endpoint, { accessKeyId: server.admin.accessKeyId, accessKeySecret: 'not-the-secret-0123456789' });
    const unknown = await consoleSignIn(server.endpoint, { accessKeyId: 'LTAInobodyHasThisKeyId00', accessKeySecret: 'not-the-secret-0123456789' });
    for (const r of [wrong, unknown]) {
      expect(r.status).toBe(401);
      expect(r.body).toContain('access key id or secret is wrong');
      expect(r.body).not.toContain('not-the-secret-0123456789');
      expect(r.headers['set-cookie']).toBeUndefined();
    }
    expect(wrong.body).toBe(unknown.body);
  });

  it('a POST from another origin, or with no Origin or Referer, is refused (CSRF)', async () => {
    const form = { accessKeyId: server.admin.accessKeyId, accessKeySecret: server.admin.accessKeySecret };
    const foreign = await consoleRequest(server.endpoint, 'POST', '/console/sign-in', { headers: { origin: 'http://evil.example' }, form });
    const none = await consoleRequest(server.endpoint, 'POST', '/console/sign-in', { form });
    const nullOrigin = await consoleRequest(server.endpoint, 'POST', '/console/sign-in', { headers: { origin: 'null' }, form });
    for (const r of [foreign, none, nullOrigin]) {
      expect(r.status).toBe(403);
      expect(r.headers['set-cookie']).toBeUndefined();
    }
    const byReferer = await consoleRequest(server.endpoint, 'POST', '/console/sign-in', { headers: { referer: `http://${server.endpoint}/console` }, form });
    expect(byReferer.status).toBe(303);
  });
});

describe('signed in', () => {
  it('the page shows who is signed in and the quota numbers the API reports, and holds no secret', async () => {
    await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, Description: 'console http test' });
    const cookie = sessionCookieOf(await consoleSignIn(server.endpoint, server.admin));
    const page = await consoleRequest(server.endpoint, 'GET', '/console', { headers: { cookie } });
    expect(page.status).toBe(200);
    expectSecurityHeaders(page.headers);
    expect(page.body).toContain(server.admin.accessKeyId);
    expect(page.body).not.toContain(server.admin.accessKeySecret);
    expect(page.body).not.toContain(cookie.split('=')[1]!);
    expect(page.body).not.toMatch(/<script(?![^>]*\bsrc=)/i);

    const json = await consoleRequest(server.endpoint, 'GET', '/console/overview.json', { headers: { cookie } });
    expect(json.status).toBe(200);
    expect(json.body).not.toContain(server.admin.accessKeySecret);
    const overview = JSON.parse(json.body) as { instances: Array<{ instance: { id: string; keyQuota: number; qps: number }; versionsUsed: number }> };
    for (const instanceId of [server.hsmInstanceId, server.softwareInstanceId]) {
      const quota = (await call('GetKmsInstanceQuotaInfos', { KmsInstanceId: instanceId, ResourceType: 'key' })).KmsInstanceQuotaInfos[0];
      const shown = overview.instances.find((i) => i.instance.id === instanceId);
      expect(shown).toMatchObject({ versionsUsed: quota.UsedQuantity, instance: { keyQuota: quota.ResourceQuota } });
    }
    expect(overview.instances.find((i) => i.instance.id === server.softwareInstanceId)?.versionsUsed).toBeGreaterThan(0);

    const panels = await consoleRequest(server.endpoint, 'GET', '/console/panels', { headers: { cookie } });
    expect(panels.status).toBe(200);
    expect(panels.body).toContain(`data-instance-id="${server.softwareInstanceId}"`);
  });

  it('the overview counts keys by state, lists a scheduled deletion and shows the encrypting version', async () => {
    const instanceId = server.hsmInstanceId;
    const keyIds: string[] = [];
    for (let i = 0; i < 3; i += 1) keyIds.push((await call('CreateKey', { DKMSInstanceId: instanceId })).KeyMetadata.KeyId);
    await call('DisableKey', { KeyId: keyIds[0] });
    await call('ScheduleKeyDeletion', { KeyId: keyIds[1], PendingWindowInDays: 7 });
    for (let i = 0; i < 3; i += 1) await call('Encrypt', { KeyId: keyIds[2], Plaintext: Buffer.from('hello').toString('base64') });
    const { KeyMetadata } = await call('DescribeKey', { KeyId: keyIds[2] });
    const { rows } = await server.kms.deps.db.query<{ state: string; n: number }>(
      'SELECT state, count(*)::int AS n FROM keys WHERE instance_id = $1 GROUP BY state',
      [instanceId],
    );
    const cookie = sessionCookieOf(await consoleSignIn(server.endpoint, server.admin));
    type Overview = {
      instances: Array<{ instance: { id: string }; keys: { byState: Record<string, number>; byProtectionLevel: Record<string, number> }; upcoming: { counts: Record<string, number>; first: Array<{ kind: string; keyId: string; at: string }> } }>;
      topVersions: Array<{ keyId: string; versionId: string; encryptionCount: number }>;
    };
    const read = async () => JSON.parse((await consoleRequest(server.endpoint, 'GET', '/console/overview.json', { headers: { cookie } })).body) as Overview;
    const shown = (await read()).instances.find((i) => i.instance.id === instanceId)!;
    expect(shown.keys.byState).toEqual(Object.fromEntries(rows.map((r) => [r.state, r.n])));
    expect(shown.keys.byState.Disabled).toBe(1);
    expect(shown.keys.byProtectionLevel).toEqual({ HSM: rows.reduce((sum, r) => sum + r.n, 0) });
    expect(shown.upcoming.counts.deletion).toBe(1);
    const listed = shown.upcoming.first.find((e) => e.kind === 'deletion');
    expect(listed?.keyId).toBe(keyIds[1]);
    const deleteDate = (await call('DescribeKey', { KeyId: keyIds[1] })).KeyMetadata.DeleteDate as string;
    expect(Math.floor(new Date(listed!.at).getTime() / 1000) * 1000).toBe(new Date(deleteDate).getTime());
    // Encryptions are counted in memory and flushed every 200 ms here: poll for them.
    await expect.poll(async () => (await read()).topVersions.find((v) => v.keyId === keyIds[2])?.encryptionCount, { timeout: 15_000, interval: 200 }).toBe(3);
    expect((await read()).topVersions.find((v) => v.keyId === keyIds[2])?.versionId).toBe(KeyMetadata.PrimaryKeyVersion);
  });

  it('the script and stylesheet are served with the same headers', async () => {
    const js = await consoleRequest(server.endpoint, 'GET', '/console/console.js');
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);
    expectSecurityHeaders(js.headers);
    const css = await consoleRequest(server.endpoint, 'GET', '/console/console.css');
    expect(css.headers['content-type']).toMatch(/^text\/css/);
  });

  it('signing out ends the session on the server (the old cookie no longer works) and clears the cookie', async () => {
    const cookie = sessionCookieOf(await consoleSignIn(server.endpoint, server.admin));
    expect((await consoleRequest(server.endpoint, 'GET', '/console/panels', { headers: { cookie } })).status).toBe(200);
    const crossSite = await consoleRequest(server.endpoint, 'POST', '/console/sign-out', { headers: { cookie, origin: 'http://evil.example' } });
    expect(crossSite.status).toBe(403);
    expect((await consoleRequest(server.endpoint, 'GET', '/console/panels', { headers: { cookie } })).status).toBe(200);
    const out = await consoleRequest(server.endpoint, 'POST', '/console/sign-out', { headers: { cookie, origin: `http://${server.endpoint}` } });
    expect(out.status).toBe(303);
    expect(out.headers['set-cookie']?.[0]).toMatch(/^kms_console=; Max-Age=0; Path=\/console; HttpOnly; SameSite=Strict/);
    expect((await consoleRequest(server.endpoint, 'GET', '/console/panels', { headers: { cookie } })).status).toBe(401);
  });

  it('disabling the admin key ends its console sessions', async () => {
    const created = await createAccessKey(server.kms.deps, { role: 'admin' }, systemCaller);
    const cookie = sessionCookieOf(await consoleSignIn(server.endpoint, { accessKeyId: created.accessKeyId, accessKeySecret: created.accessKeySecret }));
    expect((await consoleRequest(server.endpoint, 'GET', '/console/panels', { headers: { cookie } })).status).toBe(200);
    await setAccessKeyStatus(server.kms.deps, created.accessKeyId, 'Disabled', systemCaller);
    // The credential cache hears of the change through the invalidation channel: poll briefly.
    const deadline = Date.now() + 10_000;
    let status = 200;
    while (Date.now() < deadline && status !== 401) {
      status = (await consoleRequest(server.endpoint, 'GET', '/console/panels', { headers: { cookie } })).status;
      if (status !== 401) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(401);
  });

  it('sign-ins and sign-outs are in the audit trail, never with the secret', async () => {
    const cookie = sessionCookieOf(await consoleSignIn(server.endpoint, server.admin));
    await consoleRequest(server.endpoint, 'POST', '/console/sign-out', { headers: { cookie, origin: `http://${server.endpoint}` } });
    expect((await consoleSignIn(server.endpoint, keyUser)).status).toBe(403);
    const { rows } = await server.kms.deps.db.query<{ action: string; access_key_id: string; result_code: string; detail: unknown }>(
      "SELECT action, access_key_id, result_code, detail FROM audit_events WHERE action IN ('ConsoleSignIn', 'ConsoleSignOut')",
    );
    expect(rows.some((r) => r.action === 'ConsoleSignIn' && r.access_key_id === server.admin.accessKeyId && r.result_code === 'OK')).toBe(true);
    expect(rows.some((r) => r.action === 'ConsoleSignIn' && r.access_key_id === keyUser.accessKeyId && r.result_code !== 'OK')).toBe(true);
    expect(rows.some((r) => r.action === 'ConsoleSignOut')).toBe(true);
    expect(JSON.stringify(rows)).not.toContain(server.admin.accessKeySecret);
  });
});
