import { dryRunSucceeded } from '../domain/dry-run.js';
import { type PasswordPolicy, drawPassword, passwordClasses } from '../domain/random-password.js';
import type { ServiceDeps } from './context.js';

/**
 * GetRandomPassword: a password drawn from the token's RNG (`C_GenerateRandom`), on every
 * tier — the service's randomness never comes from the host when an HSM is there.
 * @throws InvalidParameter (exclusions that leave nothing), DryRunOperationError
 */
export async function getRandomPassword(deps: Pick<ServiceDeps, 'hsm'>, policy: PasswordPolicy, options: { dryRun?: boolean | undefined } = {}): Promise<string> {
  passwordClasses(policy);
  if (options.dryRun) throw dryRunSucceeded();
  return drawPassword(policy, (n) => deps.hsm.randomBytes(n));
}
