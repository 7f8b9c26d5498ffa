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
  it('round-trips any (resource, tag key) pair', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (resourceId, tagKey) => {
        expect(decodeTagCursor(encodeTagCursor({ resourceId, tagKey }))).toEqual({ resourceId, tagKey });
      }),
    );
  });

  it.each(['', 'not-a-token', Buffer.from('[1,2]').toString('base64url'), Buffer.from('{"a":1}').toString('base64url')])(
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
