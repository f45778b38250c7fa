import { defineConfig } from 'vitest/config'

// Tests read the CLI's text lines; under systemd (a CI runner running as a service)
// the processes they start would default to JSON logs (docs/OPERATIONS.md "### Logs").
// Tests that want JSON ask for it with --log-format json.
delete process.env.INVOCATION_ID
delete process.env.JOURNAL_STREAM

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // names the run's shared scale-out stack (PostgreSQL + RGW), started by the first file that asks for it
    globalSetup: ['test/scale-out-global-setup.ts'],
    reporters: ['default']
  }
})
