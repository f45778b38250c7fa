import { configDefaults, defineConfig } from 'vitest/config'

// Tests read the CLI's text lines; under systemd (a CI runner running as a service)
// the processes they start would default to JSON logs (docs/OPERATIONS.md "### Logs").
// Tests that want JSON ask for it with --log-format json.
delete process.env.INVOCATION_ID
delete process.env.JOURNAL_STREAM

// Files that measure rates and queueing delay, or how agents that start together share the
// work (who fetched what depends on who was first): run alone, after the rest, so another
// file's CPU cannot move their figures.
const TIMING = [
  'test/bench/background-netns.test.ts',
  'test/bench/branch-netns.test.ts',
  'test/peer-agent/background-pacer.test.ts',
  'test/peer-agent/segment-sync.test.ts',
  'test/peer-agent/swarm-sync.test.ts',
  'test/reliability/hostile-peers.test.ts'
]

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // names the run's shared scale-out stack (PostgreSQL + RGW), started by the first file that asks for it
    globalSetup: ['test/scale-out-global-setup.ts'],
    reporters: ['default'],
    projects: [
      // Two files at a time even on 2 CPUs (vitest's default would be 1 there): most files wait on
      // processes, links and timers, not CPU; measured 811 s of vitest with one, 581 s with two.
      { extends: true, test: { name: 'main', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...TIMING], maxWorkers: 2, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'timing', include: TIMING, maxWorkers: 1, sequence: { groupOrder: 1 } } }
    ]
  }
})
