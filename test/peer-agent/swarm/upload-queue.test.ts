/** The serving side's queue of wanted chunks (peer-agent/swarm/upload-queue.ts), without a network. */
import { describe, expect, it } from 'vitest'
import { MAX_QUEUED_WANTS } from '../../../peer-agent/swarm/constants.ts'
import { createUploadQueue } from '../../../peer-agent/swarm/upload-queue.ts'

describe('upload queue', () => {
  it('answers wants oldest first and drops cancelled ones not sent yet', () => {
    const queue = createUploadQueue()
    expect(queue.want([3, 1, 4], 10)).toBeUndefined()
    expect(queue.want([1, 5], 10)).toBeUndefined()
    expect(queue.shift()).toBe(3)
    queue.cancel([1, 9])
    expect([queue.shift(), queue.shift(), queue.shift()]).toEqual([4, 5, undefined])
  })

  it('refuses a want past the end or over MAX_QUEUED_WANTS, queueing none of it', () => {
    const queue = createUploadQueue()
    expect(queue.want([0, 10, 2], 10)).toEqual({ log: 'want of chunk 10 past the end (10)', message: 'chunk index out of range' })
    expect(queue.length).toBe(0)
    expect(queue.want(Array.from({ length: MAX_QUEUED_WANTS }, (_, i) => i), MAX_QUEUED_WANTS)).toBeUndefined()
    expect(queue.want([0], MAX_QUEUED_WANTS)).toEqual({ log: `over ${MAX_QUEUED_WANTS} queued wants`, message: 'too many wants' })
    expect(queue.length).toBe(MAX_QUEUED_WANTS)
  })
})
