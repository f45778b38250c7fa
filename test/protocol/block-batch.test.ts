/** The block batch helpers shared by coordinator and agent: the check of a request and the "unavailable" block. */
import { describe, expect, it } from 'vitest'
import { checkBlockBatch, isUnavailableBlock } from '../../protocol/block-batch.ts'
import { BLOCK_SIZE } from '../../protocol/constants.ts'

describe('block batch', () => {
  it('an all-zero block is "unavailable", any other byte makes it data', () => {
    const block = new Uint8Array(BLOCK_SIZE)
    expect(isUnavailableBlock(block)).toBe(true)
    block[BLOCK_SIZE - 1] = 1
    expect(isUnavailableBlock(block)).toBe(false)
  })

  it('counts the blocks a request names and refuses ranges past the manifest', () => {
    expect(checkBlockBatch([[0, 2], [5, 3]], 8)).toBe(5)
    expect(() => checkBlockBatch([[6, 3]], 8)).toThrow(/past the manifest's 8 non-zero blocks/)
  })
})
