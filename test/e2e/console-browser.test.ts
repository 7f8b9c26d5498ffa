import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccessKey } from '../../src/services/access.js';
import { systemCaller } from '../../src/services/context.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type Credentials, type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 17, "Done when": a real browser (playwright-core driving Debian's chromium, headless)
 * signs in to /console with the admin key, finds the quota numbers GetKmsInstanceQuotaInfos
 * reports, sees a rotation this test scheduled in the upcoming list, watches the page refresh
 * itself, and saves a screenshot under test/artifacts/; a key-user and a wrong secret are
 * refused. Without /usr/bin/chromium the test fails (scripts/setup.sh installs it), never skips.
 */
const CHROMIUM = process.env.KMS_TEST_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.resolve('test/artifacts');
const SCREENSHOT = path.join(ARTIFACTS, 'console.png');

let server: TestServer;
let call: CallApi;
let keyUser: Credentials;
let rotatingKeyId: string;
let profileDir: string;
let browser: BrowserContext;
let page: Page;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the console's browser test needs Debian's chromium (scripts/setup.sh installs it; or apt-get install chromium)`);
  }
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  const created = await createAccessKey(server.kms.deps, { role: 'key-user' }, systemCaller);
  keyUser = { accessKeyId: created.accessKeyId, accessKeySecret: created.accessKeySecret };
  // A key whose automatic rotation is due in 7 days: in the next-30-days list.
  const key = await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId, Description: 'rotates weekly', EnableAutomaticRotation: true, RotationInterval: '7d' });
  rotatingKeyId = key.KeyMetadata.KeyId as string;
  await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, Description: 'plain' });

  profileDir = await mkdtemp(path.join(os.tmpdir(), 'kms-console-chromium-'));
  browser = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 1000 },
  });
  page = browser.pages()[0] ?? (await browser.newPage());
});

afterAll(async () => {
  await browser?.close();
  if (profileDir) await rm(profileDir, { recursive: true, force: true });
  await server?.stop();
});

async function signInWith(credentials: Credentials): Promise<void> {
  await page.goto(`http://${server.endpoint}/console`);
  await page.fill('#accessKeyId', credentials.accessKeyId);
  await page.fill('#accessKeySecret', credentials.accessKeySecret);
  await Promise.all([page.waitForLoadState('load'), page.click('#sign-in')]);
}

async function keyQuota(instanceId: string): Promise<{ used: number; total: number }> {
  const info = (await call('GetKmsInstanceQuotaInfos', { KmsInstanceId: instanceId, ResourceType: 'key' })).KmsInstanceQuotaInfos[0];
  return { used: info.UsedQuantity as number, total: info.ResourceQuota as number };
}

async function shownQuota(instanceId: string): Promise<{ used: number; total: number }> {
  const panel = page.locator(`article[data-instance-id="${instanceId}"]`);
  return {
    used: Number(await panel.locator('.quota-used').textContent()),
    total: Number(await panel.locator('.quota-total').textContent()),
  };
}

describe('the console in chromium', () => {
  it('a key-user is refused with a clear message', async () => {
    await signInWith(keyUser);
    await expect(page.locator('#refusal').textContent()).resolves.toContain('key-user');
    expect(await page.locator('#signed-in-as').count()).toBe(0);
    expect((await browser.cookies()).some((c) => c.name === 'kms_console')).toBe(false);
  });

  it('a wrong secret is refused', async () => {
    await signInWith({ accessKeyId: server.admin.accessKeyId, accessKeySecret: 'wrong-secret-for-the-console' });
    await expect(page.locator('#refusal').textContent()).resolves.toContain('id or secret is wrong');
    expect(await page.locator('#signed-in-as').count()).toBe(0);
  });

  it('the admin signs in and sees the quota numbers the API reports, and nothing secret', async () => {
    await signInWith(server.admin);
    await expect(page.locator('#signed-in-as').textContent()).resolves.toBe(server.admin.accessKeyId);
    for (const instanceId of [server.hsmInstanceId, server.softwareInstanceId]) {
      expect(await shownQuota(instanceId)).toEqual(await keyQuota(instanceId));
    }
    expect((await shownQuota(server.hsmInstanceId)).used).toBeGreaterThan(0);
    const html = await page.content();
    expect(html).not.toContain(server.admin.accessKeySecret);
    const cookie = (await browser.cookies()).find((c) => c.name === 'kms_console');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/console' });
    // HttpOnly: the page's own script cannot read it.
    expect(await page.evaluate('document.cookie')).toBe('');
  });

  it('the rotation scheduled by the test is in the upcoming list of its instance', async () => {
    const row = page.locator(`article[data-instance-id="${server.hsmInstanceId}"] tr[data-kind="rotation"][data-key-id="${rotatingKeyId}"]`);
    expect(await row.count()).toBe(1);
    const { KeyMetadata } = await call('DescribeKey', { KeyId: rotatingKeyId });
    const shownAt = new Date((await row.locator('time').textContent()) ?? '');
    // The API gives whole seconds (Alibaba's date format).
    expect(Math.floor(shownAt.getTime() / 1000) * 1000).toBe(new Date(KeyMetadata.NextRotationDate as string).getTime());
  });

  it('refreshes itself: a key created after the page loaded shows up in the quota without a reload', async () => {
    const before = await shownQuota(server.softwareInstanceId);
    await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, Description: 'after load' });
    const expected = await keyQuota(server.softwareInstanceId);
    expect(expected.used).toBe(before.used + 1);
    // No reload here: only the page's own script (every 10 s) can change what it shows.
    await expect.poll(async () => (await shownQuota(server.softwareInstanceId)).used, { timeout: 30_000, interval: 250 }).toBe(expected.used);
    expect(Number(await page.locator('body').getAttribute('data-refreshes'))).toBeGreaterThanOrEqual(1);
  });

  it('saves a screenshot under test/artifacts/', async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    await rm(SCREENSHOT, { force: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect((await stat(SCREENSHOT)).size).toBeGreaterThan(10_000);
  });

  it('signing out returns to the sign-in form and the panels answer 401', async () => {
    await Promise.all([page.waitForLoadState('load'), page.click('#sign-out')]);
    expect(await page.locator('#sign-in').count()).toBe(1);
    const status = await page.evaluate(async () => (await fetch('/console/panels')).status);
    expect(status).toBe(401);
  });
});
