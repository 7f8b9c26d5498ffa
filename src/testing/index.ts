/** `hsm-kms/testing`: a throwaway hsm-kms for users' own test suites (docs/testing.md). */
export { type StartTestKmsOptions, type TestKms, startTestKms } from './start-test-kms.js';
