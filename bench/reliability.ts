/**
 * `npm run bench -- reliability [--trials N] [--fuzz-cases N]`: the
 * reliability suite (test/reliability) with the long counts (20
 * seeded kill -9 trials of agent and coordinator, more fuzz cases per decoder),
 * then the totals of every count file: trials, cases, faults injected, bytes
 * lost. Run `npm run bench -- fuzz` for the 100,000-case decoder fuzz.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { reliabilityTotals } from './lib/reliability-totals.ts'

/** One line for the list of benchmarks. */
export const summary = 'reliability suite with long counts (20 kill -9 trials each), then the totals (trials, cases, faults, bytes lost)'

/** Help text. */
export const usage = `Usage: npm run bench -- reliability [--trials N] [--fuzz-cases N] [--seed N] [--totals-only]

Runs vitest on test/reliability with TRIMSWARM_TRIALS=N (default 20) seeded
kill -9 trials and TRIMSWARM_FUZZ_CASES (default 10000) fuzz cases per
decoder, then prints the counts each file recorded in
test-artifacts/reliability/ and their totals. --totals-only prints the totals
of the last run without running anything. Exit 1 if a test failed or any
bytes were lost.`

/** Its options. */
export const options = {
  trials: { type: 'string' },
  'fuzz-cases': { type: 'string' },
  seed: { type: 'string' },
  'totals-only': { type: 'boolean' }
} as const

/** Runs the suite and prints the totals. */
export async function run (argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options, strict: true })
  let code = 0
  if (values['totals-only'] !== true) {
    const root = join(import.meta.dirname, '..')
    const r = spawnSync(join(root, 'node_modules', '.bin', 'vitest'), ['run', 'test/reliability', '--testTimeout', '600000'], {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, TRIMSWARM_TRIALS: values.trials ?? '20', TRIMSWARM_FUZZ_CASES: values['fuzz-cases'] ?? '10000', ...(values.seed != null ? { TRIMSWARM_SEED: values.seed } : {}) }
    })
    code = r.status ?? 1
  }
  const t = reliabilityTotals()
  process.stdout.write('\nreliability counts (test-artifacts/reliability/):\n' + t.lines.join('\n') + '\n')
  return code !== 0 || t.bytesLost !== 0 ? 1 : 0
}
