import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['*.test.mjs'],
    // A first start provisions a token and a database: give hooks time.
    hookTimeout: 120_000,
    testTimeout: 30_000,
  },
});
