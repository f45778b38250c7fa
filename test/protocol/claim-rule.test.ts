import { describe, expect, it } from 'vitest'
import { bitmapClear, bitmapHas, bitmapSet } from '../../protocol/claim-rule.ts'

describe('have-map bits', () => {
  it('sets, reads and clears single bits, least significant bit first, leaving the others', () => {
    const map = new Uint8Array(3)
    for (const i of [0, 7, 8, 23]) bitmapSet(map, i)
    expect([...map]).toEqual([0x81, 0x01, 0x80])
    bitmapClear(map, 7)
    bitmapClear(map, 9) // already clear
    expect([...map]).toEqual([0x01, 0x01, 0x80])
    expect([0, 7, 8, 9, 23].map(i => bitmapHas(map, i))).toEqual([true, false, true, false, true])
  })
})
