/**
 * The chunks one peer asked us for and we have not sent yet (pure state, no I/O): WANTs are
 * admitted within MAX_QUEUED_WANTS and the version's chunk count, CANCELs take chunks out.
 * The block server (block-server.ts) answers from it.
 */
import { MAX_QUEUED_WANTS } from './constants.ts'

/** Why a WANT closes the stream: the line for our log and the message for the peer. */
export interface WantRefusal {
  log: string
  message: string
}

/** The queue of one inbound block stream. */
export interface UploadQueue {
  readonly length: number
  /** Queues the indices of a WANT; a refusal (the stream is to be closed) when over MAX_QUEUED_WANTS or past the end. */
  want: (indices: readonly number[], chunkCount: number) => WantRefusal | undefined
  /** Takes cancelled indices out (those not sent yet). */
  cancel: (indices: readonly number[]) => void
  /** The next index to answer, oldest first. */
  shift: () => number | undefined
}

/** An empty queue. */
export function createUploadQueue (): UploadQueue {
  const queue: number[] = []
  return {
    get length () { return queue.length },
    want (indices, chunkCount) {
      if (queue.length + indices.length > MAX_QUEUED_WANTS) return { log: `over ${MAX_QUEUED_WANTS} queued wants`, message: 'too many wants' }
      const past = indices.find(i => i >= chunkCount)
      if (past != null) return { log: `want of chunk ${past} past the end (${chunkCount})`, message: 'chunk index out of range' }
      for (const i of indices) queue.push(i)
      return undefined
    },
    cancel (indices) {
      const cancelled = new Set(indices)
      for (let k = queue.length - 1; k >= 0; k--) if (cancelled.has(queue[k])) queue.splice(k, 1)
    },
    shift: () => queue.shift()
  }
}
