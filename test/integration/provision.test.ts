import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreatePins, parseShowSlots, provisionSoftHsmToken } from '../../src/hsm/provision.js';

const execFileAsync = promisify(execFile);

describe('SoftHSM2 token provisioning', () => {
  let dataDir: string;
  const savedConf = process.env.SOFTHSM2_CONF;
  const logs: string[] = [];
  const log = (message: string): void => {
    logs.push(message);
  };

  beforeAll(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kms-provision-'));
  });

  afterAll(async () => {
    // Provisioning sets SOFTHSM2_CONF for this process; put back what the harness had.
    if (savedConf === undefined) delete process.env.SOFTHSM2_CONF;
    else process.env.SOFTHSM2_CONF = savedConf;
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('creates 0600 PIN files once and reads the same PINs back', async () => {
    const env = {}; // no KMS_HSM_* variables: the files under the data dir are used
    const first = await loadOrCreatePins(dataDir, env, log);
    expect(first.userPin).toMatch(/^[A-Za-z0-9]{16}$/);
    expect(first.soPin).toMatch(/^[A-Za-z0-9]{16}$/);
    expect(first.userPin).not.toBe(first.soPin);
    for (const name of ['user.pin', 'so.pin']) {
      const stat = await fs.stat(path.join(dataDir, 'hsm', name));
      expect(stat.mode & 0o777).toBe(0o600);
    }
    expect(await loadOrCreatePins(dataDir, env, log)).toEqual(first);
  });

  it('prefers PINs from the environment and from named files', async () => {
    const pinFile = path.join(dataDir, 'named.pin');
    await fs.writeFile(pinFile, 'so-pin-from-file\n', { mode: 0o600 });
    const pins = await loadOrCreatePins(dataDir, { KMS_HSM_PIN: 'user-from-env', KMS_HSM_SO_PIN_FILE: pinFile }, log);
    expect(pins).toEqual({ userPin: 'user-from-env', soPin: 'so-pin-from-file' });
  });

  it('refuses its own PIN file when group or others can read it', async () => {
    const otherDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kms-provision-loose-'));
    try {
      await loadOrCreatePins(otherDir, {}, log);
      await fs.chmod(path.join(otherDir, 'hsm', 'user.pin'), 0o644);
      await expect(loadOrCreatePins(otherDir, {}, log)).rejects.toThrow(/chmod 600/);
    } finally {
      await fs.rm(otherDir, { recursive: true, force: true });
    }
  });

  it('initialises the token once and is a no-op the second time', async () => {
    const { userPin, soPin } = await loadOrCreatePins(dataDir, {}, log);
    const label = 'kms-provision-test';

    const first = await provisionSoftHsmToken({ dataDir, tokenLabel: label, userPin, soPin, log });
    expect(first.created).toBe(true);
    expect(first.confPath).toBe(path.join(dataDir, 'hsm', 'softhsm2.conf'));
    expect(first.tokenDir).toBe(path.join(dataDir, 'hsm', 'tokens'));
    expect(process.env.SOFTHSM2_CONF).toBe(first.confPath);

    const conf = await fs.readFile(first.confPath, 'utf8');
    expect(conf).toMatch(new RegExp(`^directories\\.tokendir = ${first.tokenDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    expect(conf).toMatch(/^objectstore\.backend = file$/m);
    expect(conf).not.toContain('{{TOKEN_DIR}}');
    expect((await fs.stat(first.tokenDir)).mode & 0o777).toBe(0o700);
    const confMtime = (await fs.stat(first.confPath)).mtimeMs;

    const second = await provisionSoftHsmToken({ dataDir, tokenLabel: label, userPin, soPin, log });
    expect(second).toEqual({ ...first, created: false });
    expect((await fs.stat(first.confPath)).mtimeMs).toBe(confMtime);

    const { stdout } = await execFileAsync('softhsm2-util', ['--show-slots'], {
      env: { ...process.env, SOFTHSM2_CONF: first.confPath },
    });
    const tokens = parseShowSlots(stdout).filter((s) => s.initialized && s.label === label);
    expect(tokens).toHaveLength(1);
    // Exactly one token directory: the second run did not initialise another token.
    expect((await fs.readdir(first.tokenDir)).length).toBe(1);

    // Logs show the command with the PINs redacted.
    const joined = logs.join('\n');
    expect(joined).toContain('--so-pin ****** --pin ******');
    expect(joined).not.toContain(userPin);
    expect(joined).not.toContain(soPin);
  });

  it('uses a caller-managed config without touching SOFTHSM2_CONF', async () => {
    const otherDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kms-provision-conf-'));
    try {
      const before = process.env.SOFTHSM2_CONF;
      const conf = path.join(otherDir, 'custom', 'softhsm2.conf');
      const result = await provisionSoftHsmToken({
        dataDir: otherDir,
        tokenLabel: 'kms-custom-conf',
        userPin: '1234567890',
        soPin: '0987654321',
        conf,
        log,
      });
      expect(result).toEqual({ confPath: conf, tokenDir: path.join(otherDir, 'hsm', 'tokens'), created: true });
      expect(process.env.SOFTHSM2_CONF).toBe(before);
      const again = await provisionSoftHsmToken({
        dataDir: otherDir,
        tokenLabel: 'kms-custom-conf',
        userPin: '1234567890',
        soPin: '0987654321',
        conf,
        log,
      });
      expect(again.created).toBe(false);
    } finally {
      await fs.rm(otherDir, { recursive: true, force: true });
    }
  });

  it('rejects labels PKCS#11 cannot hold', async () => {
    await expect(
      provisionSoftHsmToken({ dataDir, tokenLabel: 'x'.repeat(33), userPin: 'secret-user', soPin: 'secret-so', log }),
    ).rejects.toThrow(/1 to 32 bytes/);
  });

  it('never puts PINs in the error when softhsm2-util fails', async () => {
    // A stand-in softhsm2-util that lists no token and fails to initialise one.
    const binDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kms-provision-bin-'));
    const otherDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kms-provision-fail-'));
    const savedPath = process.env.PATH;
    try {
      const fake = path.join(binDir, 'softhsm2-util');
      await fs.writeFile(fake, '#!/bin/sh\nif [ "$1" = "--show-slots" ]; then echo "Available slots:"; exit 0; fi\necho "boom" >&2\nexit 1\n', {
        mode: 0o755,
      });
      process.env.PATH = `${binDir}${path.delimiter}${savedPath ?? ''}`;
      const error = await provisionSoftHsmToken({
        dataDir: otherDir,
        tokenLabel: 'kms-fail',
        userPin: 'secret-user-pin',
        soPin: 'secret-so-pin',
        conf: path.join(otherDir, 'softhsm2.conf'),
        log,
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(Error);
      const message = (error as Error).message;
      expect(message).toContain('boom');
      expect(message).toContain('--pin ******');
      expect(message).not.toContain('secret-user-pin');
      expect(message).not.toContain('secret-so-pin');
    } finally {
      process.env.PATH = savedPath;
      await fs.rm(binDir, { recursive: true, force: true });
      await fs.rm(otherDir, { recursive: true, force: true });
    }
  });
});
