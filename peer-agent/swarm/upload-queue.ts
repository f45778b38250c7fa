/**
 * The chunks one peer asked us for and we have not sent yet (pure state, no I/O): WANTs and
 * WANT_BLOCKS are admitted within MAX_QUEUED_WANTS and the version's chunk count, CANCELs take
 * chunks out. The block server (block-server.ts) answers from it.
 */
import { MAX_QUEUED_WANTS } from './constants.ts'

/** Why a WANT closes the stream: the line for our log and the message for the peer. */
export interface WantRefusal {
  log: string
  message: string
}

/** One queued request: a whole chunk, or (`mask`, from a WANT_BLOCKS) some of its blocks. */
export interface QueuedWant {
  index: number
  mask?: Uint8Array
}

/** The queue of one inbound block stream. */
export interface UploadQueue {
  readonly length: number
  /** Queues the indices of a WANT; a refusal (the stream is to be closed) when over MAX_QUEUED_WANTS or past the end. */
  want: (indices: readonly number[], chunkCount: number) => WantRefusal | undefined
  /** Queues a WANT_BLOCKS (the mask is checked against the chunk when it is read); refused as a WANT would be. */
  wantBlocks: (index: number, mask: Uint8Array, chunkCount: number) => WantRefusal | undefined
  /** Takes cancelled indices out (those not sent yet). */
  cancel: (indices: readonly number[]) => void
  /** The next request to answer, oldest first. */
  shift: () => QueuedWant | undefined
}

/** An empty queue. */
export function createUploadQueue (): UploadQueue {
  const queue: QueuedWant[] = []
  const refusal = (indices: readonly number[], chunkCount: number): WantRefusal | undefined => {
    if (queue.length + indices.length > MAX_QUEUED_WANTS) return { log: `over ${MAX_QUEUED_WANTS} queued wants`, message: 'too many wants' }
    const past = indices.find(i => i >= chunkCount)
    if (past != null) return { log: `want of chunk ${past} past the end (${chunkCount})`, message: 'chunk index out of range' }
    return undefined
  }
  return {
    get length () { return queue.length },
    want (indices, chunkCount) {
      const refused = refusal(indices, chunkCount)
      if (refused != null) return refused
      for (const index of indices) queue.push({ index })
      return undefined
    },
    wantBlocks (index, mask, chunkCount) {
      const refused = refusal([index], chunkCount)
      if (refused != null) return refused
      // a copy: the mask is a view of a received frame
      queue.push({ index, mask: mask.slice() })
      return undefined
    },
    cancel (indices) {
      const cancelled = new Set(indices)
      for (let k = queue.length - 1; k >= 0; k--) if (cancelled.has(queue[k].index)) queue.splice(k, 1)
    },
    shift: () => queue.shift()
  }
}
