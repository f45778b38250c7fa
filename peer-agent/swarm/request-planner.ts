/**
 * Where a session decides which peer to ask for which chunk, and which chunks it takes from
 * the origin (pure planning over the want-list and the peers' ledgers; docs/ARCHITECTURE.md
 * "Swarm"). The driver (session.ts) sends what these return.
 */
import { bitmapHas, claimOwner } from '../../protocol/block-exchange.ts'
import { ENDGAME_DUPLICATES, ORIGIN_FALLBACK_MS } from './constants.ts'
import { hasCapacity, type PeerLedger } from './peer-ledger.ts'
import { WANTED, type WantList } from './want-list.ts'

/** The least-loaded peer with capacity that holds chunk i and may be asked (`allowed`). */
function leastLoadedHolder<P extends PeerLedger> (ready: readonly P[], i: number, allowed: (p: P) => boolean = () => true): P | undefined {
  let best: P | undefined
  for (const p of ready) if (hasCapacity(p) && bitmapHas(p.have, i) && allowed(p) && (best == null || p.inflightBytes < best.inflightBytes)) best = p
  return best
}

/** Wanted chunks that some peer holds, bucketed by how many peers hold them (index = that count). */
function bucketsByAvailability<P extends PeerLedger> (wants: WantList<P>): number[][] {
  const buckets: number[][] = []
  for (const i of wants.pending()) { const holders = wants.availability(i); if (holders > 0) (buckets[holders] ??= []).push(i) }
  return buckets
}

/**
 * Plans one round of requests and records them in `wants` (at `now`); returns the chunk
 * indices to send in a WANT to each peer.
 * - rarest first: wanted chunks by how many peers hold them, rarest bucket first, from a random
 *   rotation inside a bucket (`random`), so peers that start together take different chunks;
 *   each chunk goes to the least-loaded peer with room in its pipeline that holds it;
 * - endgame: when no wanted chunk was left without a peer, chunks still in flight are asked of
 *   a second peer (up to ENDGAME_DUPLICATES copies); the first to verify wins.
 */
export function planRequests<P extends PeerLedger> (wants: WantList<P>, peers: Iterable<P>, now: number, random: () => number = Math.random): Map<P, number[]> {
  const plan = new Map<P, number[]>()
  const ready = [...peers].filter(hasCapacity)
  if (ready.length === 0) return plan
  const ask = (p: P, i: number): void => {
    wants.request(p, i, now)
    let list = plan.get(p)
    if (list == null) { list = []; plan.set(p, list) }
    list.push(i)
  }
  let unassigned = 0
  let full = false
  for (const bucket of bucketsByAvailability(wants)) {
    if (bucket == null) continue
    const start = Math.floor(random() * bucket.length)
    for (let k = 0; k < bucket.length; k++) {
      const i = bucket[(start + k) % bucket.length]
      // Every peer is full: the endgame below is skipped anyway, so stop scanning.
      if (full) break
      const best = leastLoadedHolder(ready, i)
      if (best == null) { unassigned++; continue }
      ask(best, i)
      if (!ready.some(hasCapacity)) full = true
    }
    if (full) break
  }
  if (unassigned === 0 && !full) {
    for (const [i, from] of wants.inflight()) {
      if (from.size >= ENDGAME_DUPLICATES) continue
      const best = leastLoadedHolder(ready, i, p => !from.has(p))
      if (best != null) ask(best, i)
    }
  }
  return plan
}

/**
 * The claim rule: up to `max` wanted chunks that no connected peer holds and that this agent
 * (`self`) should fetch from the origin: it owns the chunk's claim group among the participants
 * (itself and the connected peers syncing the version now, `claimOwner`), or the owner has
 * announced no new chunk for `fallbackMs` since the chunk was its to fetch (its last holder left:
 * `wants.freedAt`). While a peer held the chunk, the owner could not fetch it from the origin
 * either: counted from its last progress alone, a holder that stalled everyone for longer than
 * `fallbackMs` (a slow-loris peer) made every agent fetch every chunk itself once it was dropped.
 * Does not reserve them (the caller does).
 */
export function selectOriginChunks<P extends PeerLedger> (
  wants: WantList<P>, self: string, peers: ReadonlyMap<string, P>, now: number, max: number, fallbackMs = ORIGIN_FALLBACK_MS
): number[] {
  const participants = [self]
  for (const p of peers.values()) if (p.active && !p.closed) participants.push(p.id)
  const out: number[] = []
  for (let i = 0; i < wants.chunkCount && out.length < max; i++) {
    if (wants.stateOf(i) !== WANTED || wants.availability(i) > 0) continue
    const owner = participants.length === 1 ? self : claimOwner(i, participants)
    if (owner !== self) {
      const o = peers.get(owner as string)
      if (o != null && !o.closed && now - Math.max(o.lastProgressAt, wants.freedAt(i)) < fallbackMs) continue
    }
    out.push(i)
  }
  return out
}
