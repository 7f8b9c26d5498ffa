import { describe, expect, it } from 'vitest';
import { pathOf, splitTarget } from '../../src/api/http/target.js';

describe('request targets (the router and the signature read the same path and query)', () => {
  it('origin form: the path before the first ?, and the raw query after it, undecoded', () => {
    expect(splitTarget('/?Action=Encrypt&KeyId=a%2Bb')).toEqual({ path: '/', rawQuery: 'Action=Encrypt&KeyId=a%2Bb' });
    expect(splitTarget('/health')).toEqual({ path: '/health', rawQuery: '' });
    expect(splitTarget('/a?b?c')).toEqual({ path: '/a', rawQuery: 'b?c' });
  });

  it('absolute form gives its path; a target naming no path gives none', () => {
    expect(splitTarget('http://kms.example/?Action=ListKeys')).toEqual({ path: '/', rawQuery: 'Action=ListKeys' });
    expect(splitTarget('*')).toBeUndefined();
  });

  it('the routed path drops one trailing slash but never the root', () => {
    expect(pathOf('/health/')).toBe('/health');
    expect(pathOf('/?x=1')).toBe('/');
    expect(pathOf('/metrics?name=a')).toBe('/metrics');
    expect(pathOf('*')).toBeUndefined();
  });
});
