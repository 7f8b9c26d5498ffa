import { defineConfig } from 'vitest/config';

// Unit tests only: no globalSetup (servers, HSM, Postgres, Redis), so they run in milliseconds.
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
  },
});
