/**
 * Prints the totals of the reliability count files (trials, cases, faults
 * injected, bytes lost) and checks each one records bytes lost = 0. Files run
 * in parallel, so this sees the counts of the files that finished before it
 * plus the previous run's; `npm run bench -- reliability` prints the totals
 * after the whole suite.
 */
import { describe, expect, it } from 'vitest'
import { reliabilityTotals } from '../../bench/lib/reliability-totals.ts'
import { readAllCounts } from './counts.ts'

describe('reliability summary', () => {
  it('every recorded file guards a promise and lost no bytes; prints the totals', async () => {
    const all = await readAllCounts()
    for (const [name, c] of all) {
      expect(typeof c.promise, name).toBe('string')
      expect(c.bytesLost, name).toBe(0)
      expect((c.trials ?? 0) + (c.cases ?? 0), name).toBeGreaterThan(0)
    }
    const t = reliabilityTotals()
    process.stdout.write('\nreliability counts (test-artifacts/reliability/):\n' + t.lines.join('\n') + '\n')
    expect(t.bytesLost).toBe(0)
  })
})
