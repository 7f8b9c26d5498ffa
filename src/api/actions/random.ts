import { z } from 'zod';
import { DEFAULT_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '../../domain/random-password.js';
import { getRandomPassword } from '../../services/random-password.js';
import { p } from '../params.js';
import { defineAction } from './action.js';

/**
 * GetRandomPassword (alibaba-api.md §2 #49). Parameter names are the wire names of
 * `@alicloud/kms20160120` 1.2.0's GetRandomPasswordRequest (`PasswordLength`, not `Length`).
 */
export const randomActions = {
  GetRandomPassword: defineAction({
    access: 'use',
    params: z.object({
      PasswordLength: p.integer(MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH).optional(),
      ExcludeCharacters: p.optionalString(256),
      ExcludeLowercase: p.boolean().optional(),
      ExcludeUppercase: p.boolean().optional(),
      ExcludeNumbers: p.boolean().optional(),
      ExcludePunctuation: p.boolean().optional(),
      RequireEachIncludedType: p.boolean().optional(),
      DryRun: p.boolean().optional(),
    }),
    async handle(params, { kms }) {
      const password = await getRandomPassword(
        kms.deps,
        {
          length: params.PasswordLength ?? DEFAULT_PASSWORD_LENGTH,
          excludeCharacters: params.ExcludeCharacters ?? '',
          excludeLowercase: params.ExcludeLowercase ?? false,
          excludeUppercase: params.ExcludeUppercase ?? false,
          excludeNumbers: params.ExcludeNumbers ?? false,
          excludePunctuation: params.ExcludePunctuation ?? false,
          // Alibaba's default: every included type at least once.
          requireEachIncludedType: params.RequireEachIncludedType ?? true,
        },
        { dryRun: params.DryRun },
      );
      return { RandomPassword: password };
    },
  }),
};
