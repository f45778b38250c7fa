/** peer-agent/coalesced-writes.ts: consecutive block writes become one write; nothing is lost or reordered. */
import { describe, expect, it } from 'vitest'
import { createCoalescedWriter } from '../../peer-agent/coalesced-writes.ts'

function recorder (): { writes: Array<[number, number[]]>, writeAt: (d: Uint8Array, pos: number) => void } {
  const writes: Array<[number, number[]]> = []
  return { writes, writeAt: (d, pos) => { writes.push([pos, [...d]]) } }
}

describe('createCoalescedWriter', () => {
  it('joins writes that continue each other and flushes on a gap, when full, and on flush()', () => {
    const r = recorder()
    const w = createCoalescedWriter(r.writeAt, 4)
    w.write(new Uint8Array([1]), 10)
    w.write(new Uint8Array([2, 3]), 11)
    expect(r.writes).toEqual([])
    w.write(new Uint8Array([9]), 20) // a gap: the run 10..12 goes out
    expect(r.writes).toEqual([[10, [1, 2, 3]]])
    w.write(new Uint8Array([8, 7, 6, 6]), 21) // continues it but would pass 4 bytes: flush first
    w.write(new Uint8Array([5, 5, 5, 5, 5]), 30) // larger than the buffer: the pending run goes out, then this one, written through
    w.flush()
    w.flush()
    expect(r.writes).toEqual([[10, [1, 2, 3]], [20, [9]], [21, [8, 7, 6, 6]], [30, [5, 5, 5, 5, 5]]])
  })

  it('the caller may reuse its buffer at once: the writer copies', () => {
    const r = recorder()
    const w = createCoalescedWriter(r.writeAt, 8)
    const b = new Uint8Array([1, 2])
    w.write(b, 0)
    b.fill(7)
    w.write(b, 2)
    w.flush()
    expect(r.writes).toEqual([[0, [1, 2, 7, 7]]])
  })
})
