/**
 * The settle wait of a session's claim rule (pure state, no I/O; docs/ARCHITECTURE.md "Swarm",
 * test/peer-agent/swarm/settle.test.ts). For at most SETTLE_MS from the session's start,
 * originChunks() hands out nothing while
 * - listed peers (the rendezvous's list) may still come: agents that start together then split the
 *   claims instead of each claiming everything while alone. A peer is no longer waited for once
 *   connected, or once its dial failed or it refused for another reason than not serving the
 *   version yet (an agent that has left). A peer not listed that answers it does not serve the
 *   version yet is waited for the same way (it registered after our list);
 * - or none was listed: a lone agent may be the first of several that start together, the others
 *   still starting (they find it at the rendezvous); while it waits they connect and share the
 *   claims, rather than finding it already gone (it lingers only while peers fetch from it);
 * - or we joined late: a peer still syncing (ACTIVE) already held chunks we lack when we started, so peers
 *   fetch from the origin already, and the rounds they claimed before we came (some ours by the new
 *   claim rule) must land and be announced first, or we would fetch them again. A peer that has
 *   finished (serving, not ACTIVE) has no round in flight: joining only such peers, we start at once.
 * Agents that start together, the listed ones all connected, ask the origin at once (issue 21: 1-1.5 s
 * sooner at 100 mbit, docs/BENCHMARKS.md "Time to ready at 100 mbit (session 8)").
 * A peer that answered NOT_SERVING (its sync is starting) is waited for past SETTLE_MS, up to
 * SETTLE_STARTING_MS from the start, until it connects: claims made without it split the chunks
 * between fewer agents than its own rule will, and part of them is fetched twice (session 13).
 */

import { bitmapHas } from '../../protocol/block-exchange.ts'

/**
 * Joining late: a peer still syncing holds a chunk we lack (`weHold(i)` false), so it fetches from
 * the origin already. Chunks we hold too say nothing of that: read from disks alike (the same host
 * files, the same older version), every agent of a trim or an update holds them before its session
 * starts, and counting them made every such session wait SETTLE_MS (trim at 100 mbit, session 9).
 */
export function holdsWhatWeLack (have: Uint8Array, chunkCount: number, weHold: (i: number) => boolean): boolean {
  for (let i = 0; i < chunkCount; i++) if (bitmapHas(have, i) && !weHold(i)) return true
  return false
}

/** The settle wait of one session. */
export interface SettleWait {
  /**
   * The session starts at `now` (performance.now()): the wait lasts at most `settleMs` from here, or
   * `startingMs` while a peer that said it is starting (see `starting`) has not arrived.
   */
  begin: (now: number, settleMs: number, startingMs: number) => void
  /** Listed peer `id` is connected or not coming; true when it was the last one waited for. */
  arrived: (id: string) => boolean
  /**
   * Peer `id`, listed or not (found through an open connection, the rendezvous after our list, mDNS), syncs
   * the version and does not serve it yet (NOT_SERVING) at `now`: it is starting with us, so it is waited for as
   * if listed, and past SETTLE_MS until it comes, up to `startingMs` from the start. Without it, an agent that registered just after our list was left out
   * of our first claims and fetched part of them again (branch bench at 20mbit: 62.5 MB on the WAN, 55-58 usually).
   */
  starting: (id: string, now: number) => void
  /**
   * Peer `id` is listed by the rendezvous after our start (it registered after our list), not heard from yet: waited
   * for as if listed while SETTLE_MS lasts, and past it only once it says it is starting (stale entries, agents that have
   * left, do not hold the claims for SETTLE_STARTING_MS).
   */
  listedLater: (id: string, now: number) => void
  /** The start's dials are done; `late`: a connected peer still syncing held chunks then. */
  joined: (late: boolean) => void
  /** Whether the claim rule still hands out nothing at `now`. */
  settling: (now: number) => boolean
  /** A log line (debug) for the first `count` chunks claimed at `now`, split with the peers `others`: agents that start together must split them alike. */
  describeFirst: (count: number, now: number, others: readonly string[]) => string
}

/** The wait for a session whose rendezvous listed `listed` (peer ids, ourselves left out). */
export function createSettleWait (listed: Iterable<string>): SettleWait {
  const expected = new Set(listed)
  /** Peers that said they are starting (NOT_SERVING) while the wait lasted, not arrived yet. */
  const startingPeers = new Set<string>()
  const lone = expected.size === 0
  let until = Number.POSITIVE_INFINITY
  let untilStarting = Number.POSITIVE_INFINITY
  let start = 0
  let late = true
  return {
    begin (now, settleMs, startingMs) { start = now; until = now + settleMs; untilStarting = now + Math.max(settleMs, startingMs) },
    arrived (id) {
      const was = expected.delete(id)
      return (startingPeers.delete(id) || was) && expected.size === 0 && startingPeers.size === 0
    },
    // not added to `expected` too: the starting clause of `settling` covers the whole wait (untilStarting >= until)
    starting (id, now) { if (now < until) startingPeers.add(id) },
    listedLater (id, now) { if (now < until) expected.add(id) },
    joined (joinedLate) { late = joinedLate },
    settling: (now) => (now < until && (lone || late || expected.size > 0)) || (now < untilStarting && startingPeers.size > 0),
    describeFirst: (count, now, others) => `first origin claims (${count} chunks) ${Math.round(now - start)} ms after the start, ` +
      `split with ${others.length === 0 ? 'no peer' : others.join(', ')}`
  }
}
