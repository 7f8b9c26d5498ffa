import pkcs11js from 'pkcs11js';
import { describe, expect, it } from 'vitest';
import { KmsError } from '../../src/domain/errors.js';
import { isGeneralError, translatePkcs11Error } from '../../src/hsm/pkcs11/errors.js';

/** Issue 19: transient token failures are retryable 503s, never 500s; other codes stay internal. */
const failure = (code: number) => new pkcs11js.Pkcs11Error('token said no', code, 'C_Test');

describe('translatePkcs11Error', () => {
  it.each([
    ['CKR_GENERAL_ERROR', pkcs11js.CKR_GENERAL_ERROR],
    ['CKR_DEVICE_ERROR', pkcs11js.CKR_DEVICE_ERROR],
    ['CKR_SESSION_HANDLE_INVALID', pkcs11js.CKR_SESSION_HANDLE_INVALID],
    ['CKR_SESSION_CLOSED', pkcs11js.CKR_SESSION_CLOSED],
    ['CKR_DEVICE_REMOVED', pkcs11js.CKR_DEVICE_REMOVED],
    ['CKR_USER_NOT_LOGGED_IN', pkcs11js.CKR_USER_NOT_LOGGED_IN],
  ])('%s is ServiceUnavailableTemporary (503)', (_name, code) => {
    const translated = translatePkcs11Error(failure(code), 'encrypt');
    expect(translated.kind).toBe('unavailable');
    expect(translated.code).toBe('ServiceUnavailableTemporary');
  });

  it('a bad handle or mechanism is an internal failure naming the code, not a secret', () => {
    const translated = translatePkcs11Error(failure(pkcs11js.CKR_KEY_HANDLE_INVALID), 'encrypt');
    expect(translated.kind).toBe('internal');
    expect(translated.message).toContain('CKR 0x60');
  });

  it('a KmsError passes through; isGeneralError tells CKR_GENERAL_ERROR apart for callers that read it as bad input', () => {
    const kms = new KmsError('InvalidCiphertext', 'The ciphertext is invalid.');
    expect(translatePkcs11Error(kms, 'decrypt')).toBe(kms);
    expect(isGeneralError(failure(pkcs11js.CKR_GENERAL_ERROR))).toBe(true);
    expect(isGeneralError(failure(pkcs11js.CKR_DEVICE_ERROR))).toBe(false);
    expect(isGeneralError(new Error('not pkcs11'))).toBe(false);
  });
});
