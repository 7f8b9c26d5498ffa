import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KmsError } from '../../src/domain/errors.js';
import { KEY_STATES } from '../../src/domain/key.js';
import { decodeTagCursor, encodeTagCursor } from '../../src/domain/page-token.js';
import { rotationAfterTransition } from '../../src/domain/rotation-status.js';

describe('rotationAfterTransition (§5.4: paused while not Enabled)', () => {
  it.each([
    ['Enabled', 'Disabled', 'Suspended'],
    ['Enabled', 'PendingDeletion', 'Suspended'],
    ['Suspended', 'Enabled', 'Enabled'],
    ['Suspended', 'PendingDeletion', 'Suspended'],
    ['Enabled', 'Enabled', 'Enabled'],
  ] as const)('%s, key → %s: %s', (current, next, expected) => {
    expect(rotationAfterTransition(current, next)).toBe(expected);
  });

  it('never turns rotation on for a key that has it off', () => {
    for (const state of KEY_STATES) expect(rotationAfterTransition('Disabled', state)).toBe('Disabled');
  });
});

describe('ListTagResources NextToken', () => {
  it('round-trips any (key id, tag key) pair the service can issue', () => {
    const keyId = fc.stringMatching(/^key-[a-z0-9]{4,60}$/);
    const tagKey = fc.stringMatching(/^[A-Za-z0-9 /\\_\-.+=:@]{1,128}$/).filter((k) => !/^(aliyun|acs:)/i.test(k));
    fc.assert(
      fc.property(keyId, tagKey, (resourceId, key) => {
        expect(decodeTagCursor(encodeTagCursor({ resourceId, tagKey: key }))).toEqual({ resourceId, tagKey: key });
      }),
    );
  });

  const issued = encodeTagCursor({ resourceId: 'key-abcd1234', tagKey: 'env' });
  const forged = (json: string) => Buffer.from(json, 'utf8').toString('base64url');
  it.each([
    '',
    'not-a-token',
    forged('[1,2]'),
    forged('{"a":1}'),
    // Found by a probe: shapes the service never issues were paged as if real.
    forged('["",""]'),
    forged('["key-abcd1234","a\\"b"]'),
    forged('["key-abcd1234",""]'),
    forged('["key-abcd1234","\\ud800"]'),
    forged('[ "key-abcd1234","env"]'),
    Buffer.from('["key-abcd1234","env"]').toString('base64'),
    `${issued}=`,
  ])(
    'refuses %j with InvalidParameter(NextToken)',
    (token) => {
      expect(() => decodeTagCursor(token)).toThrow(KmsError);
      try {
        decodeTagCursor(token);
      } catch (e) {
        expect((e as KmsError).message).toContain('"NextToken"');
      }
    },
  );
});
