/**
 * One budget for the bytes of request bodies the coordinator holds in memory
 * at once, across every request. Each route's own limit bounds one body; this
 * bounds their sum, so many clients sending large bodies together (chunk
 * uploads, big JSON) cannot make the process grow without end: past it a
 * request is answered 503 (request-body.ts) and its client retries later.
 */

/** The share of the budget one request holds. */
export interface BodyLease {
  /** The budget's size in bytes (for messages). */
  readonly maxBytes: number
  /** Takes `n` more bytes for this request; false (nothing taken) when the budget has not that much left. */
  take: (n: number) => boolean
  /** Gives back everything this request took (idempotent): its body is no longer held. */
  release: () => void
}

/** The shared budget. */
export interface BodyBudget {
  readonly maxBytes: number
  /** Bytes held by all requests now. */
  held: () => number
  /** A lease for one request. */
  lease: () => BodyLease
}

/** Creates a budget of `maxBytes` bytes. */
export function createBodyBudget (init: { maxBytes: number }): BodyBudget {
  let held = 0
  return {
    maxBytes: init.maxBytes,
    held: () => held,
    lease () {
      let mine = 0
      return {
        maxBytes: init.maxBytes,
        take (n) {
          if (held + n > init.maxBytes) return false
          held += n
          mine += n
          return true
        },
        release () {
          held -= mine
          mine = 0
        }
      }
    }
  }
}
