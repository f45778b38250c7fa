/** The serving side's queue of wanted chunks (peer-agent/swarm/upload-queue.ts), without a network. */
import { describe, expect, it } from 'vitest'
import { MAX_QUEUED_WANTS } from '../../../peer-agent/swarm/constants.ts'
import { createUploadQueue } from '../../../peer-agent/swarm/upload-queue.ts'

describe('upload queue', () => {
  it('answers wants oldest first and drops cancelled ones not sent yet', () => {
    const queue = createUploadQueue()
    expect(queue.want([3, 1, 4], 10)).toBeUndefined()
    expect(queue.want([1, 5], 10)).toBeUndefined()
    expect(queue.shift()).toEqual({ index: 3 })
    queue.cancel([1, 9])
    expect([queue.shift(), queue.shift(), queue.shift()]).toEqual([{ index: 4 }, { index: 5 }, undefined])
  })

  it('refuses a want past the end or over MAX_QUEUED_WANTS, queueing none of it', () => {
    const queue = createUploadQueue()
    expect(queue.want([0, 10, 2], 10)).toEqual({ log: 'want of chunk 10 past the end (10)', message: 'chunk index out of range' })
    expect(queue.length).toBe(0)
    expect(queue.want(Array.from({ length: MAX_QUEUED_WANTS }, (_, i) => i), MAX_QUEUED_WANTS)).toBeUndefined()
    expect(queue.want([0], MAX_QUEUED_WANTS)).toEqual({ log: `over ${MAX_QUEUED_WANTS} queued wants`, message: 'too many wants' })
    expect(queue.length).toBe(MAX_QUEUED_WANTS)
  })

  it('queues a WANT_BLOCKS with its own copy of the mask, bounded and cancelled like a WANT', () => {
    const queue = createUploadQueue()
    const frame = Uint8Array.of(9, 0b101)
    expect(queue.wantBlocks(7, frame.subarray(1), 10)).toBeUndefined()
    frame[1] = 0
    expect(queue.want([2], 10)).toBeUndefined()
    expect(queue.wantBlocks(10, Uint8Array.of(1), 10)).toEqual({ log: 'want of chunk 10 past the end (10)', message: 'chunk index out of range' })
    expect(queue.shift()).toEqual({ index: 7, mask: Uint8Array.of(0b101) })
    expect(queue.wantBlocks(4, Uint8Array.of(1), 10)).toBeUndefined()
    queue.cancel([4])
    expect([queue.shift(), queue.shift()]).toEqual([{ index: 2 }, undefined])
    expect(queue.want(Array.from({ length: MAX_QUEUED_WANTS }, (_, i) => i), MAX_QUEUED_WANTS)).toBeUndefined()
    expect(queue.wantBlocks(0, Uint8Array.of(1), MAX_QUEUED_WANTS)).toEqual({ log: `over ${MAX_QUEUED_WANTS} queued wants`, message: 'too many wants' })
  })
})
