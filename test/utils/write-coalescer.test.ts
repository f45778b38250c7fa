/** utils/write-coalescer.ts: gathered writes leave a file exactly as the same writes made one by one. */
import { describe, expect, it } from 'vitest'
import { createWriteCoalescer } from '../../utils/write-coalescer.ts'
import { createPrng } from '../helpers/images.ts'

/** An in-memory file that records each write it receives. */
function memoryFile (size: number): { bytes: Uint8Array, writes: Array<[number, number]>, writeAt: (b: Uint8Array, at: number) => void } {
  const bytes = new Uint8Array(size)
  const writes: Array<[number, number]> = []
  return { bytes, writes, writeAt: (b, at) => { bytes.set(b, at); writes.push([at, b.length]) } }
}

describe('write coalescer', () => {
  it('gathers writes at consecutive offsets into one, up to its capacity', () => {
    const file = memoryFile(64)
    const w = createWriteCoalescer(file.writeAt, 16)
    for (let at = 0; at < 24; at += 4) w.write(new Uint8Array(4).fill(at + 1), at)
    expect(file.writes).toEqual([[0, 16]]) // the fifth write did not fit: the first four went out
    expect(w.pending).toBe(8)
    w.flush()
    expect(file.writes).toEqual([[0, 16], [16, 8]])
    expect(w.pending).toBe(0)
    expect([...file.bytes.subarray(0, 24)]).toEqual([...Array(24).keys()].map(i => (i & ~3) + 1))
  })

  it('a write elsewhere flushes first, so later bytes win where writes overlap', () => {
    const file = memoryFile(32)
    const w = createWriteCoalescer(file.writeAt, 16)
    w.write(new Uint8Array([1, 1, 1, 1]), 0)
    w.write(new Uint8Array([2, 2]), 2) // overlaps what is gathered: not an extension
    w.flush()
    expect(file.writes).toEqual([[0, 4], [2, 2]])
    expect([...file.bytes.subarray(0, 4)]).toEqual([1, 1, 2, 2])
  })

  it('a write of its capacity or more goes straight through, after what was gathered', () => {
    const file = memoryFile(64)
    const w = createWriteCoalescer(file.writeAt, 8)
    w.write(new Uint8Array([7]), 0)
    w.write(new Uint8Array(8).fill(9), 1)
    expect(file.writes).toEqual([[0, 1], [1, 8]])
    expect(w.pending).toBe(0)
  })

  it('copies what it gathers: the caller may reuse its buffer', () => {
    const file = memoryFile(8)
    const w = createWriteCoalescer(file.writeAt, 8)
    const buf = new Uint8Array([5, 5])
    w.write(buf, 0)
    buf.fill(0)
    w.flush()
    expect([...file.bytes.subarray(0, 2)]).toEqual([5, 5])
  })

  it('shows gathered bytes only for ranges wholly gathered, and tells overlaps', () => {
    const file = memoryFile(64)
    const w = createWriteCoalescer(file.writeAt, 32)
    w.write(new Uint8Array([1, 2, 3, 4]), 10)
    w.write(new Uint8Array([5, 6]), 14)
    expect([...w.gathered(11, 4)!]).toEqual([2, 3, 4, 5])
    expect(w.gathered(9, 2)).toBeUndefined()
    expect(w.gathered(15, 2)).toBeUndefined()
    expect(w.overlaps(8, 3)).toBe(true)
    expect(w.overlaps(15, 9)).toBe(true)
    expect(w.overlaps(0, 10)).toBe(false)
    expect(w.overlaps(16, 4)).toBe(false)
    w.drop()
    expect(w.gathered(11, 4)).toBeUndefined()
    w.flush()
    expect(file.writes).toEqual([]) // dropped bytes are never written
  })

  it('any sequence of writes and flushes leaves the file as direct writes do', () => {
    const rand = createPrng(7)
    for (let trial = 0; trial < 50; trial++) {
      const direct = memoryFile(256)
      const file = memoryFile(256)
      const w = createWriteCoalescer(file.writeAt, rand.int(1, 64))
      let at = 0
      for (let i = 0; i < 200; i++) {
        // mostly consecutive writes, sometimes a jump back or ahead, sometimes a flush
        if (rand.int(0, 9) === 0) at = rand.int(0, 200)
        const bytes = rand.bytes(Math.min(rand.int(1, 24), 256 - at))
        if (bytes.length === 0) { at = 0; continue }
        direct.writeAt(bytes, at)
        w.write(bytes, at)
        at += bytes.length
        if (rand.int(0, 19) === 0) w.flush()
      }
      w.flush()
      expect(file.bytes).toEqual(direct.bytes)
    }
  })
})
