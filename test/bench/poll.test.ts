import { describe, expect, it } from 'vitest'
import { pollUntil } from '../../bench/lib/poll.ts'

describe('pollUntil (bench/lib/poll.ts)', () => {
  it('asks until the probe answers, telling the wait before each sleep', async () => {
    let asked = 0
    const waits: number[] = []
    const r = await pollUntil(async () => ++asked === 3 ? 'built' : undefined, { everyMs: 5, timeoutMs: 5000, onWait: s => { waits.push(s) } })
    expect(r.value).toBe('built')
    expect(asked).toBe(3)
    expect(waits).toHaveLength(2)
    expect(r.seconds).toBeGreaterThanOrEqual(0.009)
  })

  it('gives up after the timeout with no value', async () => {
    let asked = 0
    const r = await pollUntil(async () => { asked++; return undefined }, { everyMs: 10, timeoutMs: 50 })
    expect(r.value).toBeUndefined()
    expect(r.seconds).toBeGreaterThanOrEqual(0.05)
    expect(asked).toBeGreaterThan(1)
  })

  it('ends with the probe\'s error', async () => {
    await expect(pollUntil(async () => { throw new Error('HTTP 500') }, { everyMs: 5, timeoutMs: 1000 })).rejects.toThrow('HTTP 500')
  })
})
