/** utils/release-bytes.ts: a large buffer's memory freed at once, never a view into Node's shared pool. */
import { describe, expect, it } from 'vitest'
import { releaseBytes } from '../../utils/release-bytes.ts'

describe('releaseBytes', () => {
  it('detaches a buffer of its own: every view of it reads as empty', () => {
    const big = Buffer.allocUnsafeSlow(4 << 20)
    const view = big.subarray(100, 200)
    releaseBytes(big)
    expect(big.length).toBe(0)
    expect(view.length).toBe(0)
    expect(() => releaseBytes(big)).not.toThrow() // twice: nothing left to free
  })

  it('leaves a small buffer carved from Node\'s shared pool alone (its neighbours use the same memory)', () => {
    const a = Buffer.from('first')
    const b = Buffer.from('second')
    expect(a.buffer).toBe(b.buffer) // both in the pool
    releaseBytes(a)
    expect(a.toString()).toBe('first')
    expect(b.toString()).toBe('second')
  })
})
