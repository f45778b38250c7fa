/**
 * The want-list of one session (pure state, no I/O): each chunk's state, how many connected
 * peers hold it, and which peers it is requested from. The session's driver (session.ts)
 * changes it only through these methods, the planner (request-planner.ts) decides from it.
 * Invariant: a chunk is INFLIGHT exactly while some peer's ledger has a request open for it.
 */
import { bitmapClear, bitmapHas, bitmapSet } from '../../protocol/block-exchange.ts'
import { PeerProtocolError } from './errors.ts'
import type { PeerLedger } from './peer-ledger.ts'

/** Not needed (had before, received, or marked had). */
export const HAD = 0
/** Needed, not requested. */
export const WANTED = 1
/** Requested from one or more peers. */
export const INFLIGHT = 2
/** Reserved for the engine's origin fetch (the claim rule gave it to us). */
export const ORIGIN = 3

/** A chunk's state in the want-list. */
export type ChunkState = typeof HAD | typeof WANTED | typeof INFLIGHT | typeof ORIGIN

/** The want-list of one image version. */
export interface WantList<P extends PeerLedger = PeerLedger> {
  readonly chunkCount: number
  /** Chunks still needed (wanted, in flight or reserved for the origin). */
  readonly remaining: number
  stateOf: (i: number) => ChunkState
  /** How many connected peers hold chunk i. */
  availability: (i: number) => number
  /**
   * When chunk i last lost its last holder (a peer holding it left or said DONT_HAVE; 0 if never):
   * only from then on could its claim owner fetch it from the origin (the claim rule skips chunks a peer holds).
   */
  freedAt: (i: number) => number
  chunkBytes: (i: number) => number
  /** The wanted chunks that may need a request, in the order they became wanted (compacted on each call). */
  pending: () => readonly number[]
  /** In-flight chunks and the peers each is requested from. */
  inflight: () => ReadonlyMap<number, ReadonlySet<P>>
  /** Records a request of chunk i from p at `now`. */
  request: (p: P, i: number, now: number) => void
  /** Forgets p's request of i without touching the chunk's state (the caller settles it). */
  unrequest: (p: P, i: number) => void
  /** An in-flight chunk requested from no peer any more is wanted again. */
  settle: (i: number) => void
  /** Chunk i is here: cancels its other requests (returns the peers to send CANCEL to) and counts it done. */
  markHad: (i: number) => P[]
  /** Chunk i is needed again (writing it failed). */
  want: (i: number) => void
  /** Reserves chunks for the origin fetch. */
  reserveForOrigin: (indices: readonly number[]) => void
  /** Origin chunks the engine could not fetch are wanted again. */
  release: (indices: Iterable<number>) => void
  /** Applies a full have-map and/or new indices from p; returns how many chunks p announced that it did not hold before. */
  addHave: (p: P, bitmap: Uint8Array | undefined, indices: readonly number[] | undefined) => number
  /** p no longer holds these chunks (at `now`): its requests of them go back to the others (returns how many were requested of it). */
  dontHave: (p: P, indices: readonly number[], now: number) => number
  /** p is gone (at `now`): its requests go back, its chunks no longer count as available. */
  forget: (p: P, now: number) => void
}

/** A want-list of `chunkCount` chunks, wanting `need` (default all); throws RangeError for an index out of range. */
export function createWantList<P extends PeerLedger = PeerLedger> (
  chunkCount: number, chunkBytes: (i: number) => number, need?: Iterable<number>
): WantList<P> {
  const state = new Uint8Array(chunkCount)
  const avail = new Uint16Array(chunkCount)
  const freed = new Float64Array(chunkCount)
  const inPending = new Uint8Array(chunkCount)
  const pending: number[] = []
  const requestedFrom = new Map<number, Set<P>>()
  let remaining = 0

  function addPending (i: number): void {
    if (inPending[i] === 0) { inPending[i] = 1; pending.push(i) }
  }

  /** p no longer counts as a holder of chunk i. */
  function unhold (i: number, now: number): void {
    if (--avail[i] === 0) freed[i] = now
  }

  function wantAgain (i: number): void {
    state[i] = WANTED
    addPending(i)
  }

  const list: WantList<P> = {
    chunkCount,
    get remaining () { return remaining },
    stateOf: (i) => state[i] as ChunkState,
    availability: (i) => avail[i] ?? 0,
    freedAt: (i) => freed[i] ?? 0,
    chunkBytes,
    pending () {
      let kept = 0
      for (const i of pending) if (state[i] === WANTED) pending[kept++] = i; else inPending[i] = 0
      pending.length = kept
      return pending
    },
    inflight: () => requestedFrom,
    request (p, i, now) {
      state[i] = INFLIGHT
      p.inflight.set(i, now)
      p.inflightBytes += chunkBytes(i)
      let from = requestedFrom.get(i)
      if (from == null) { from = new Set(); requestedFrom.set(i, from) }
      from.add(p)
    },
    unrequest (p, i) {
      p.inflight.delete(i)
      p.inflightBytes -= chunkBytes(i)
      requestedFrom.get(i)?.delete(p)
    },
    settle (i) {
      const from = requestedFrom.get(i)
      if (from != null && from.size === 0) requestedFrom.delete(i)
      if (state[i] === INFLIGHT && (from == null || from.size === 0)) wantAgain(i)
    },
    markHad (i) {
      const cancelled: P[] = []
      for (const o of requestedFrom.get(i) ?? []) {
        if (!o.inflight.has(i)) continue
        o.inflight.delete(i)
        o.inflightBytes -= chunkBytes(i)
        o.cancelled.add(i)
        cancelled.push(o)
      }
      requestedFrom.delete(i)
      state[i] = HAD
      remaining--
      return cancelled
    },
    want (i) {
      wantAgain(i)
      remaining++
    },
    reserveForOrigin (indices) {
      for (const i of indices) state[i] = ORIGIN
    },
    release (indices) {
      for (const i of indices) if (i >= 0 && i < chunkCount && state[i] === ORIGIN) wantAgain(i)
    },
    addHave (p, bitmap, indices) {
      let added = 0
      if (bitmap != null) {
        for (let i = 0; i < chunkCount; i++) {
          const had = bitmapHas(p.have, i)
          const has = bitmapHas(bitmap, i)
          if (had !== has) { avail[i] += has ? 1 : -1; if (has) added++ }
        }
        p.have = bitmap.slice()
      }
      for (const i of indices ?? []) {
        if (i >= chunkCount) throw new PeerProtocolError(`have-update of chunk ${i} past the end (${chunkCount})`)
        if (!bitmapHas(p.have, i)) { bitmapSet(p.have, i); avail[i]++; added++ }
      }
      return added
    },
    dontHave (p, indices, now) {
      let ended = 0
      for (const i of indices) {
        if (i >= chunkCount) throw new PeerProtocolError(`dont-have of chunk ${i} past the end`)
        if (bitmapHas(p.have, i)) { bitmapClear(p.have, i); unhold(i, now) }
        if (p.inflight.has(i)) { list.unrequest(p, i); list.settle(i); ended++ }
      }
      return ended
    },
    forget (p, now) {
      for (const i of [...p.inflight.keys()]) { list.unrequest(p, i); list.settle(i) }
      for (let i = 0; i < chunkCount; i++) if (bitmapHas(p.have, i)) unhold(i, now)
    }
  }

  for (const i of need ?? Array.from({ length: chunkCount }, (_, k) => k)) {
    if (!Number.isSafeInteger(i) || i < 0 || i >= chunkCount) throw new RangeError(`need: chunk index ${i} out of range`)
    if (state[i] !== WANTED) { state[i] = WANTED; remaining++; pending.push(i); inPending[i] = 1 }
  }
  return list
}
