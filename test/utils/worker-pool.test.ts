import { describe, expect, it } from 'vitest'
import { forEachLimit } from '../../utils/worker-pool.ts'

const tick = async (ms = 1): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('forEachLimit', () => {
  it('runs every item once with at most `limit` in flight', async () => {
    let inFlight = 0
    let most = 0
    const seen: number[] = []
    await forEachLimit(Array.from({ length: 40 }, (_, i) => i), 4, async (item, index) => {
      expect(index).toBe(item)
      inFlight++
      most = Math.max(most, inFlight)
      await tick(item % 3)
      seen.push(item)
      inFlight--
    })
    expect(most).toBe(4)
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i))
  })

  it('gives each call its worker slot, never two calls in one slot at once', async () => {
    const busy = new Set<number>()
    await forEachLimit(Array.from({ length: 30 }, (_, i) => i), 3, async (_item, _index, worker) => {
      expect(worker).toBeGreaterThanOrEqual(0)
      expect(worker).toBeLessThan(3)
      expect(busy.has(worker)).toBe(false)
      busy.add(worker)
      await tick()
      busy.delete(worker)
    })
  })

  it('reads a generator lazily and handles fewer items than slots', async () => {
    let pulled = 0
    function * gen (): Generator<number> { for (let i = 0; i < 5; i++) { pulled++; yield i } }
    const got: number[] = []
    await forEachLimit(gen(), 10, async (i) => { got.push(i) })
    expect(got.sort()).toEqual([0, 1, 2, 3, 4])
    expect(pulled).toBe(5)
    await forEachLimit([], 3, async () => { throw new Error('not called') })
  })

  it('after the first failure starts nothing more, waits for calls in flight, then throws that failure', async () => {
    const started: number[] = []
    let settled = 0
    const run = forEachLimit(Array.from({ length: 100 }, (_, i) => i), 3, async (i) => {
      started.push(i)
      if (i === 4) throw new Error('chunk 4 failed')
      if (i === 5) { await tick(20); settled++; throw new Error('later failure') }
      await tick(5)
      settled++
    })
    await expect(run).rejects.toThrow('chunk 4 failed')
    expect(settled).toBe(started.length - 1) // everything started, except the failed one, has finished
    expect(started.length).toBeLessThan(10)
  })

  it('stops on abort with the signal\'s reason, after the calls in flight', async () => {
    const ac = new AbortController()
    let running = 0
    let started = 0
    const run = forEachLimit(Array.from({ length: 100 }, (_, i) => i), 2, async () => {
      started++
      running++
      if (started === 3) ac.abort(new Error('cancelled by user'))
      await tick(5)
      running--
    }, { signal: ac.signal })
    await expect(run).rejects.toThrow('cancelled by user')
    expect(running).toBe(0)
    expect(started).toBeLessThan(6)
  })

  it('refuses a limit that is not a whole number of at least 1', async () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) await expect(forEachLimit([1], bad, async () => {})).rejects.toThrow(RangeError)
  })
})
