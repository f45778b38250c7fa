/** protocol/prefix-groups.ts: blocks grouped by their 8-byte prefix, against a Map keyed by the prefix as a BigInt. */
import { describe, expect, it } from 'vitest'
import { groupByPrefix, groupMembers } from '../../protocol/prefix-groups.ts'
import { createPrng } from '../helpers/images.ts'

/** Block prefixes from 64-bit keys (8 bytes each, big-endian). */
function prefixes (keys: bigint[]): Uint8Array {
  const out = new Uint8Array(keys.length * 8)
  const v = new DataView(out.buffer)
  keys.forEach((k, i) => { v.setBigUint64(i * 8, k) })
  return out
}

describe('prefix groups', () => {
  it('numbers groups in order of their first block and lists each group\'s blocks ascending', () => {
    const groups = groupByPrefix(prefixes([5n, 6n, 5n, 7n, 6n, 5n]))
    expect([...groups.groupOf]).toEqual([0, 1, 0, 2, 1, 0])
    expect([...groups.firsts]).toEqual([0, 1, 3])
    const { starts, members } = groupMembers(groups)
    expect([...starts]).toEqual([0, 3, 5, 6])
    expect([...members]).toEqual([0, 2, 5, 1, 4, 3])
  })

  it('no blocks: no groups', () => {
    const groups = groupByPrefix(new Uint8Array(0))
    expect(groups.firsts.length).toBe(0)
    expect([...groupMembers(groups).starts]).toEqual([0])
  })

  it('agrees with a Map keyed by the whole 64-bit prefix, halves that collide in one word included', () => {
    const rand = createPrng(19)
    // few distinct values, many repeats (so the table probes past taken slots), and keys that share their high or low 32 bits
    const pool: bigint[] = [0n, 1n, 1n << 32n, (1n << 32n) | 1n, 0xffffffffn, 0xffffffff00000000n, 0xffffffffffffffffn]
    for (let i = 0; i < 300; i++) pool.push(BigInt(rand.u32()) << 32n | BigInt(rand.u32() & 0xff))
    const keys = Array.from({ length: 5000 }, () => pool[rand.int(0, pool.length - 1)])
    const groups = groupByPrefix(prefixes(keys))
    const { starts, members } = groupMembers(groups)
    const expected = new Map<bigint, number[]>()
    keys.forEach((k, i) => { const g = expected.get(k); if (g == null) expected.set(k, [i]); else g.push(i) })
    const lists = [...expected.values()]
    expect([...groups.firsts]).toEqual(lists.map(l => l[0]))
    lists.forEach((list, g) => {
      expect([...members.subarray(starts[g], starts[g + 1])]).toEqual(list)
      for (const i of list) expect(groups.groupOf[i]).toBe(g)
    })
  })
})
