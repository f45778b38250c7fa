/** The origin's batch slots: a global bound, shares per principal and per group, waiters over their share let others pass. */
import { describe, expect, it } from 'vitest'
import { createBatchSlots, defaultShare } from '../../coordinator/batch-slots.ts'

const owner = (principal: string, ...groups: string[]): { principal: string, groups: string[] } => ({ principal, groups })
const settled = async (p: Promise<unknown>): Promise<boolean> => await Promise.race([p.then(() => true), new Promise<boolean>(resolve => setTimeout(() => resolve(false), 10))])

describe('batch slots', () => {
  it('all slots but a quarter (at least one stays free), at least one, is the default share', () => {
    expect([1, 2, 3, 4, 8, 16].map(defaultShare)).toEqual([1, 1, 2, 3, 6, 12])
  })

  it('one principal holds at most its share; another principal of another group still gets a slot', async () => {
    const slots = createBatchSlots({ maxSlots: 8, maxPerPrincipal: 4, maxPerGroup: 4 })
    const b = Array.from({ length: 16 }, async () => await slots.acquire(owner('b1', 'b')))
    const held = await Promise.all(b.slice(0, 4))
    expect(slots.active()).toBe(4)
    expect(slots.waiting()).toBe(12)
    const a = await slots.acquire(owner('a1', 'a'))
    expect(slots.active()).toBe(5)
    // a slot B gives back goes to B's next waiter
    held[0]()
    expect(await settled(b[4])).toBe(true)
    a()
  })

  it("the tokens of one group share the group's slots", async () => {
    const slots = createBatchSlots({ maxSlots: 8, maxPerPrincipal: 4, maxPerGroup: 4 })
    for (let i = 0; i < 4; i++) await slots.acquire(owner(`b${i}`, 'b'))
    const fifth = slots.acquire(owner('b9', 'b'))
    expect(await settled(fifth)).toBe(false)
    expect(await settled(slots.acquire(owner('c', 'c')))).toBe(true)
  })

  it('the global bound holds, waiters run in order, and an aborted waiter leaves the line', async () => {
    const slots = createBatchSlots({ maxSlots: 2, maxPerPrincipal: 2, maxPerGroup: 2 })
    const r1 = await slots.acquire(owner('x', 'g'))
    const r2 = await slots.acquire(owner('y', 'h'))
    const ac = new AbortController()
    const gone = slots.acquire(owner('z', 'i'), ac.signal)
    const next = slots.acquire(owner('w', 'j'))
    ac.abort(new Error('client gone'))
    await expect(gone).rejects.toThrow('client gone')
    r1()
    expect(await settled(next)).toBe(true)
    r1() // idempotent
    expect(slots.active()).toBe(2)
    r2()
    expect(slots.active()).toBe(1)
  })
})
