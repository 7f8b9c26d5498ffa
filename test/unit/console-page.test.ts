import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { panelsFragment } from '../../src/api/console/page.js';
import { isAllowedHost, isSameOriginPost, sessionIdOf, wantsSecureCookie } from '../../src/api/console/security.js';
import { type InstanceOverview, type OpsOverview, perMinute } from '../../src/services/ops-dashboard.js';

const instance = (over: { id?: string; name?: string; used: number; quota: number }): InstanceOverview => ({
  instance: { id: over.id ?? 'kst-a', name: over.name ?? 'kst-a', type: 'HSM', keyQuota: over.quota, qps: 100, keyStorage: 'HsmInternal', status: 'Connected', createdAt: new Date(0) },
  versionsUsed: over.used,
  qpsUsed: 0,
  keys: { byState: { Enabled: over.used }, byOrigin: {}, byProtectionLevel: {} },
  upcoming: { counts: { rotation: 0, materialExpiry: 0, deletion: 0 }, first: [] },
  rate: [],
});

const overview = (instances: InstanceOverview[]): OpsOverview => ({
  generatedAt: new Date('2026-01-01T00:00:00Z'),
  instances,
  defaultKeys: undefined,
  requestRate: [],
  hsm: { tokenLabel: 't', manufacturer: 'm', model: 'x', probeOk: true, probeMs: 1, sessions: { size: 8, open: 1, inUse: 0, waiting: 0 }, masterWrappingKey: true, capabilities: {} },
  queues: [],
  topVersions: [],
  versionsPastWarning: [],
  recentAudit: [],
});

const levelOf = (used: number, quota: number) => /class="quota quota-(\w+)"/.exec(panelsFragment(overview([instance({ used, quota })])))?.[1];

describe('the quota bar', () => {
  it('turns amber at 80 % and red at 95 % of the key quota', () => {
    expect(levelOf(79, 100)).toBe('ok');
    expect(levelOf(80, 100)).toBe('warn');
    expect(levelOf(94, 100)).toBe('warn');
    expect(levelOf(95, 100)).toBe('critical');
    expect(levelOf(100, 100)).toBe('critical');
    expect(levelOf(0, 0)).toBe('ok');
    expect(levelOf(1, 0)).toBe('critical');
  });

  it('shows used and total as numbers, the bar never wider than the quota', () => {
    const html = panelsFragment(overview([instance({ used: 150, quota: 100 })]));
    expect(html).toContain('<span class="quota-used">150</span> / <span class="quota-total">100</span>');
    expect(html).toContain('class="bar-fill" x="0" y="0" width="100"');
  });
});

describe('escaping', () => {
  it('an instance name with markup is shown as text', () => {
    const html = panelsFragment(overview([instance({ name: '<script>alert(1)</script>"', used: 1, quota: 10 })]));
    expect(html).not.toContain('<script>');
    expect(html).toContain('&#60;script&#62;alert(1)&#60;/script&#62;&#34;');
  });
});

describe('perMinute', () => {
  it('averages per-second counts per minute', () => {
    const samples = Array.from({ length: 120 }, (_, i) => ({ second: 6000 + i, requests: 2, throttled: i < 60 ? 1 : 0 }));
    expect(perMinute(samples)).toEqual([
      { at: 6000, requests: 2, throttled: 1 },
      { at: 6060, requests: 2, throttled: 0 },
    ]);
  });
});

const req = (headers: Record<string, string>, encrypted = false) => ({ headers, socket: { encrypted } }) as unknown as IncomingMessage;

describe('request checks', () => {
  it('a POST is same-origin only when Origin (or else Referer) names the Host', () => {
    expect(isSameOriginPost(req({ host: '127.0.0.1:8080', origin: 'http://127.0.0.1:8080' }))).toBe(true);
    expect(isSameOriginPost(req({ host: 'kms.example:443', origin: 'https://KMS.example:443' }))).toBe(true);
    expect(isSameOriginPost(req({ host: '127.0.0.1:8080', origin: 'http://127.0.0.1:9090' }))).toBe(false);
    expect(isSameOriginPost(req({ host: '127.0.0.1:8080', origin: 'null' }))).toBe(false);
    expect(isSameOriginPost(req({ host: '127.0.0.1:8080' }))).toBe(false);
    expect(isSameOriginPost(req({ host: '127.0.0.1:8080', referer: 'http://127.0.0.1:8080/console' }))).toBe(true);
    // An Origin, when sent, decides (a same-host Referer does not rescue a foreign Origin).
    expect(isSameOriginPost(req({ host: '127.0.0.1:8080', origin: 'http://evil.example', referer: 'http://127.0.0.1:8080/console' }))).toBe(false);
    expect(isSameOriginPost(req({ host: '127.0.0.1:8080', origin: 'file:///x' }))).toBe(false);
  });

  it('reads the session cookie among others', () => {
    expect(sessionIdOf(req({ cookie: 'a=1; kms_console=abc; b=2' }))).toBe('abc');
    expect(sessionIdOf(req({ cookie: 'xkms_console=abc' }))).toBeUndefined();
    expect(sessionIdOf(req({}))).toBeUndefined();
  });

  it('Secure: always, never, or (auto) over TLS or behind a TLS proxy', () => {
    expect(wantsSecureCookie(req({}), 'auto')).toBe(false);
    expect(wantsSecureCookie(req({}, true), 'auto')).toBe(true);
    expect(wantsSecureCookie(req({ 'x-forwarded-proto': 'https' }), 'auto')).toBe(true);
    expect(wantsSecureCookie(req({}), 'always')).toBe(true);
    expect(wantsSecureCookie(req({}, true), 'never')).toBe(false);
  });

  it('KMS_ALLOWED_HOSTS: empty allows any host, else only those listed', () => {
    expect(isAllowedHost(req({ host: 'x:1' }), [])).toBe(true);
    expect(isAllowedHost(req({ host: 'KMS.local:8080' }), ['kms.local:8080'])).toBe(true);
    expect(isAllowedHost(req({ host: 'evil.example:8080' }), ['kms.local:8080'])).toBe(false);
  });
});
