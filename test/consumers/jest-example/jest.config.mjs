// Jest runs ES modules with NODE_OPTIONS=--experimental-vm-modules; `transform: {}` leaves them as they are.
export default {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/*.test.mjs'],
  transform: {},
  // A first start provisions a token and a database.
  testTimeout: 120_000,
};
