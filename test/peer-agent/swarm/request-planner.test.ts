/**
 * The session's pure state and planning, without a network: the want-list (chunk states,
 * availability, requests), the peer ledger (pipeline, rate, timeouts), the peer book (bans,
 * back-offs), the request planner (rarest first, least-loaded peer, endgame) and the claim rule
 * (which chunks this agent takes from the origin).
 */
import { describe, expect, it } from 'vitest'
import { bitmapHas, bitmapSet, CLAIM_GROUP_CHUNKS, claimOwner } from '../../../protocol/block-exchange.ts'
import {
  ENDGAME_DUPLICATES, MAX_SLOW_BACKOFF_DOUBLINGS, ORIGIN_FALLBACK_MS, PIPELINE_BYTES, PIPELINE_MAX_BYTES, PIPELINE_MIN_REQUESTS
} from '../../../peer-agent/swarm/constants.ts'
import { PeerProtocolError } from '../../../peer-agent/swarm/errors.ts'
import { createPeerBook } from '../../../peer-agent/swarm/peer-book.ts'
import { createPeerLedger, hasCapacity, measureRate, needsRefill, RATE_WINDOW_MS, timeoutReason, type PeerLedger } from '../../../peer-agent/swarm/peer-ledger.ts'
import { planRequests, selectOriginChunks } from '../../../peer-agent/swarm/request-planner.ts'
import { createWantList, HAD, INFLIGHT, ORIGIN, WANTED, type WantList } from '../../../peer-agent/swarm/want-list.ts'

const KIB = 1024

/** A have-map of `count` chunks holding `indices`. */
function haveMap (count: number, indices: Iterable<number>): Uint8Array {
  const bitmap = new Uint8Array(Math.ceil(count / 8))
  for (const i of indices) bitmapSet(bitmap, i)
  return bitmap
}

/** A want-list of `count` chunks of `bytes` each, and peers holding what `holds` says. */
function setup (count: number, holds: Record<string, Iterable<number>>, bytes = 64 * KIB): { wants: WantList, peers: Map<string, PeerLedger> } {
  const wants = createWantList(count, () => bytes)
  const peers = new Map<string, PeerLedger>()
  for (const [id, indices] of Object.entries(holds)) {
    const p = createPeerLedger(id, count, true, 0)
    wants.addHave(p, haveMap(count, indices), undefined)
    peers.set(id, p)
  }
  return { wants, peers }
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, k) => from + k)

describe('want-list', () => {
  it('starts with the needed chunks wanted and refuses an index out of range', () => {
    const wants = createWantList(10, () => 1, [2, 3, 3, 7])
    expect(wants.remaining).toBe(3)
    expect([0, 2, 3, 7].map(i => wants.stateOf(i))).toEqual([HAD, WANTED, WANTED, WANTED])
    expect(() => createWantList(4, () => 1, [4])).toThrow(RangeError)
    expect(() => createWantList(4, () => 1, [-1])).toThrow(RangeError)
  })

  it('counts availability from have-maps and updates, and takes it back when a peer goes', () => {
    const { wants, peers } = setup(16, { a: [0, 1, 2], b: [1, 2] })
    expect(range(0, 4).map(i => wants.availability(i))).toEqual([1, 2, 2, 0])
    const a = peers.get('a') as PeerLedger
    // an update counts only what is new; a new full map replaces the old one
    expect(wants.addHave(a, undefined, [2, 3])).toBe(1)
    expect(wants.addHave(a, haveMap(16, [3, 4]), undefined)).toBe(1)
    expect(range(0, 5).map(i => wants.availability(i))).toEqual([0, 1, 1, 1, 1])
    expect(() => wants.addHave(a, undefined, [16])).toThrow(PeerProtocolError)
    wants.forget(a, 0)
    expect(range(0, 5).map(i => wants.availability(i))).toEqual([0, 1, 1, 0, 0])
  })

  it('a dont-have clears the bit and sends the request back to the wanted chunks', () => {
    const { wants, peers } = setup(8, { a: [0, 1] })
    const a = peers.get('a') as PeerLedger
    wants.request(a, 0, 5)
    expect(wants.stateOf(0)).toBe(INFLIGHT)
    expect(wants.dontHave(a, [0, 1], 0)).toBe(1)
    expect(bitmapHas(a.have, 0)).toBe(false)
    expect(wants.availability(0)).toBe(0)
    expect(wants.stateOf(0)).toBe(WANTED)
    expect(a.inflight.size).toBe(0)
    expect(a.inflightBytes).toBe(0)
    expect(() => wants.dontHave(a, [8], 0)).toThrow(PeerProtocolError)
  })

  it('marking a chunk had cancels every request of it once, and counts it done once', () => {
    const { wants, peers } = setup(4, { a: [0], b: [0] })
    const [a, b] = [peers.get('a') as PeerLedger, peers.get('b') as PeerLedger]
    wants.request(a, 0, 1)
    wants.request(b, 0, 2)
    const cancelled = wants.markHad(0)
    expect(cancelled.map(p => p.id).sort()).toEqual(['a', 'b'])
    expect(a.cancelled.has(0) && b.cancelled.has(0)).toBe(true)
    expect(a.inflightBytes + b.inflightBytes).toBe(0)
    expect(wants.stateOf(0)).toBe(HAD)
    expect(wants.remaining).toBe(3)
    expect(wants.inflight().has(0)).toBe(false)
    // writing it failed: wanted again
    wants.want(0)
    expect(wants.remaining).toBe(4)
    expect(wants.pending()).toContain(0)
  })

  it('an in-flight chunk goes back to wanted only when no peer has it requested any more', () => {
    const { wants, peers } = setup(4, { a: [1], b: [1] })
    const [a, b] = [peers.get('a') as PeerLedger, peers.get('b') as PeerLedger]
    wants.request(a, 1, 0)
    wants.request(b, 1, 0)
    wants.unrequest(a, 1)
    wants.settle(1)
    expect(wants.stateOf(1)).toBe(INFLIGHT)
    wants.forget(b, 0)
    expect(wants.stateOf(1)).toBe(WANTED)
  })

  it('origin reservations are released only while still reserved, and pending() drops what is no longer wanted', () => {
    const wants = createWantList(6, () => 1)
    wants.reserveForOrigin([0, 1])
    wants.markHad(1)
    wants.release([0, 1, 99, -1])
    expect(wants.stateOf(0)).toBe(WANTED)
    expect(wants.stateOf(1)).toBe(HAD)
    expect([...wants.pending()]).toEqual([0, 2, 3, 4, 5])
  })
})

describe('peer ledger', () => {
  it('has capacity for at least PIPELINE_MIN_REQUESTS, else up to its pipeline bytes', () => {
    const p = createPeerLedger('a', 8, false, 0)
    for (let i = 0; i < PIPELINE_MIN_REQUESTS; i++) { p.inflight.set(i, 0); p.inflightBytes += PIPELINE_BYTES }
    expect(hasCapacity(p)).toBe(false)
    p.inflight.delete(0)
    expect(hasCapacity(p)).toBe(true)
    p.closed = true
    expect(hasCapacity(p)).toBe(false)
  })

  it('sizes the pipeline to a second of the measured rate, between PIPELINE_BYTES and PIPELINE_MAX_BYTES', () => {
    const p = createPeerLedger('a', 8, false, 0)
    measureRate(p, 10_000_000, RATE_WINDOW_MS / 2)
    expect(p.pipelineBytes).toBe(PIPELINE_BYTES) // window not over yet
    measureRate(p, 0, 1000) // 10 MB in 1 s
    expect(p.rate).toBeCloseTo(10_000_000)
    expect(p.pipelineBytes).toBeCloseTo(10_000_000)
    measureRate(p, 1000 * PIPELINE_MAX_BYTES, 2000)
    expect(p.pipelineBytes).toBe(PIPELINE_MAX_BYTES)
    const slow = createPeerLedger('b', 8, false, 0)
    measureRate(slow, 1000, 1000)
    expect(slow.pipelineBytes).toBe(PIPELINE_BYTES)
  })

  it('asks for a refill at half the window, or below PIPELINE_MIN_REQUESTS', () => {
    const p = createPeerLedger('a', 8, false, 0)
    for (let i = 0; i < 4; i++) p.inflight.set(i, 0)
    p.inflightBytes = PIPELINE_BYTES
    expect(needsRefill(p)).toBe(false)
    p.inflightBytes = PIPELINE_BYTES / 2
    expect(needsRefill(p)).toBe(true)
  })

  it('is stalled after stallMs without a byte, too slow after requestMs for one chunk', () => {
    const p = createPeerLedger('a', 8, false, 0)
    const limits = { stallMs: 5000, requestMs: 20_000 }
    expect(timeoutReason(p, 0, 60_000, limits)).toBeUndefined() // nothing asked: never stalled
    p.inflight.set(0, 1000)
    expect(timeoutReason(p, 0, 5_999, limits)).toBeUndefined() // silence counts from the request
    expect(timeoutReason(p, 0, 6_001, limits)).toBe('stalled: no data for 5000 ms')
    expect(timeoutReason(p, 20_000, 21_001, limits)).toBe('too slow: a chunk took over 20000 ms')
  })
})

describe('peer book', () => {
  it('backs off, forgives, bans for good, and doubles the back-off of a slow peer up to the cap', () => {
    const book = createPeerBook()
    book.backOff('a', 100)
    expect(book.isBlocked('a', 99)).toBe(true)
    expect(book.isBlocked('a', 100)).toBe(false)
    book.backOff('a', 100)
    book.forgive('a')
    expect(book.isBlocked('a', 0)).toBe(false)
    book.ban('b')
    book.backOff('b', 0)
    expect(book.isBlocked('b', 1e12)).toBe(true)
    const backoffs = range(0, MAX_SLOW_BACKOFF_DOUBLINGS + 3).map(() => book.strike('c', 10).backoffMs)
    expect(backoffs.slice(0, 3)).toEqual([10, 20, 40])
    expect(backoffs.at(-1)).toBe(10 * 2 ** MAX_SLOW_BACKOFF_DOUBLINGS)
    expect(book.strike('c', 10).times).toBe(MAX_SLOW_BACKOFF_DOUBLINGS + 4)
  })
})

describe('request planner', () => {
  it('asks for the rarest chunks first and gives each to the least-loaded holder', () => {
    // chunk 0..3 held by both, 4 held by a only, 5 by b only; small pipelines: 2 requests each
    const { wants, peers } = setup(6, { a: [0, 1, 2, 3, 4], b: [0, 1, 2, 3, 5] }, PIPELINE_BYTES)
    const plan = planRequests(wants, peers.values(), 7, () => 0)
    const asked = Object.fromEntries([...plan].map(([p, list]) => [p.id, list]))
    // the chunks only one peer holds come first; then one shared chunk each
    expect(asked.a[0]).toBe(4)
    expect(asked.b[0]).toBe(5)
    expect(asked.a).toHaveLength(PIPELINE_MIN_REQUESTS)
    expect(asked.b).toHaveLength(PIPELINE_MIN_REQUESTS)
    expect(new Set([...asked.a, ...asked.b]).size).toBe(2 * PIPELINE_MIN_REQUESTS)
    for (const [p, list] of plan) for (const i of list) expect(p.inflight.get(i)).toBe(7)
    // every peer is full: nothing more until something arrives
    expect(planRequests(wants, peers.values(), 8).size).toBe(0)
  })

  it('rotates the start inside a bucket, so peers that start together take different chunks', () => {
    const first = (r: number): number => {
      const { wants, peers } = setup(100, { a: range(0, 100) }, PIPELINE_BYTES)
      return (planRequests(wants, peers.values(), 0, () => r).get(peers.get('a') as PeerLedger) as number[])[0]
    }
    expect(first(0)).toBe(0)
    expect(first(0.5)).toBe(50)
  })

  it('skips chunks no peer holds, and a peer without capacity', () => {
    const { wants, peers } = setup(4, { a: [1] })
    const a = peers.get('a') as PeerLedger
    a.closed = true
    expect(planRequests(wants, peers.values(), 0).size).toBe(0)
    a.closed = false
    const plan = planRequests(wants, peers.values(), 0)
    expect(plan.get(a)).toEqual([1])
    expect([0, 2, 3].map(i => wants.stateOf(i))).toEqual([WANTED, WANTED, WANTED])
  })

  it('endgame: with every chunk asked for, what is in flight is asked of a second peer, never a third', () => {
    const { wants, peers } = setup(2, { a: [0, 1] })
    const a = peers.get('a') as PeerLedger
    planRequests(wants, peers.values(), 0, () => 0)
    expect(a.inflight.size).toBe(2)
    const b = createPeerLedger('b', 2, true, 0)
    wants.addHave(b, haveMap(2, [0, 1]), undefined)
    peers.set('b', b)
    const plan = planRequests(wants, peers.values(), 1)
    expect(plan.get(b)).toEqual([0, 1])
    expect(wants.inflight().get(0)?.size).toBe(ENDGAME_DUPLICATES)
    const c = createPeerLedger('c', 2, true, 0)
    wants.addHave(c, haveMap(2, [0, 1]), undefined)
    peers.set('c', c)
    expect(planRequests(wants, peers.values(), 2).size).toBe(0)
  })

  it('no endgame while a wanted chunk waits for a holder with room in its pipeline', () => {
    const { wants, peers } = setup(4, { a: [0, 1, 2, 3] }, PIPELINE_BYTES)
    const a = peers.get('a') as PeerLedger
    planRequests(wants, peers.values(), 0, () => 0)
    expect([...a.inflight.keys()]).toEqual([0, 1]) // full at PIPELINE_MIN_REQUESTS chunks of PIPELINE_BYTES
    const b = createPeerLedger('b', 4, true, 0)
    wants.addHave(b, haveMap(4, [0, 1]), undefined)
    peers.set('b', b)
    // 2 and 3 are not asked for yet (only a holds them): b is not asked to duplicate 0 and 1
    expect(planRequests(wants, peers.values(), 1).size).toBe(0)
  })
})

describe('claim rule (selectOriginChunks)', () => {
  const count = 4 * CLAIM_GROUP_CHUNKS

  it('alone: every wanted chunk no peer holds, up to max, in order', () => {
    const { wants, peers } = setup(count, { a: [0, 1] })
    peers.get('a')!.active = false
    expect(selectOriginChunks(wants, 'self', peers, 0, 3)).toEqual([2, 3, 4])
    wants.reserveForOrigin([2, 3, 4])
    expect(selectOriginChunks(wants, 'self', peers, 0, 3)).toEqual([5, 6, 7])
  })

  it('with active peers: only the groups this agent owns, until an owner makes no progress for the fallback time', () => {
    const { wants, peers } = setup(count, { x: [], y: [] })
    const owners = ['self', 'x', 'y']
    const mine = range(0, count).filter(i => claimOwner(i, owners) === 'self')
    expect(mine.length).toBeGreaterThan(0)
    expect(mine.length).toBeLessThan(count)
    expect(selectOriginChunks(wants, 'self', peers, 1000, Infinity)).toEqual(mine)
    // x stalls: its groups are ours too once ORIGIN_FALLBACK_MS passed since its last new chunk
    peers.get('x')!.lastProgressAt = 0
    peers.get('y')!.lastProgressAt = ORIGIN_FALLBACK_MS
    const later = selectOriginChunks(wants, 'self', peers, ORIGIN_FALLBACK_MS + 1, Infinity)
    expect(later).toEqual(range(0, count).filter(i => claimOwner(i, owners) !== 'y'))
    // an inactive peer (serving, not syncing) is no participant
    peers.get('y')!.active = false
    expect(selectOriginChunks(wants, 'self', peers, 1000, Infinity)).toEqual(range(0, count).filter(i => claimOwner(i, ['self', 'x']) === 'self'))
  })

  it('an owner kept from the origin by a peer holding everything gets the fallback time again once that peer is dropped', () => {
    // x (a slow-loris peer, no participant) claims every chunk; o is the claim owner of the groups
    // that are not ours and, stuck on x like us, announces nothing for longer than ORIGIN_FALLBACK_MS
    const { wants, peers } = setup(count, { x: range(0, count), o: [] })
    const x = peers.get('x')!
    x.active = false
    const theirs = range(0, count).filter(i => claimOwner(i, ['self', 'o']) === 'o')
    expect(theirs.length).toBeGreaterThan(0)
    const dropAt = 2 * ORIGIN_FALLBACK_MS
    expect(selectOriginChunks(wants, 'self', peers, dropAt - 1, Infinity)).toEqual([])
    peers.delete('x')
    wants.forget(x, dropAt)
    // only our groups: o could not fetch its own while x held them, so it is not late with them yet
    // (before, both agents fetched every chunk at this point and shared none)
    const mine = range(0, count).filter(i => claimOwner(i, ['self', 'o']) === 'self')
    expect(selectOriginChunks(wants, 'self', peers, dropAt + 1, Infinity)).toEqual(mine)
    wants.reserveForOrigin(mine)
    // o still announces nothing for ORIGIN_FALLBACK_MS after the drop: its groups are ours too (it cannot hold them hostage)
    expect(selectOriginChunks(wants, 'self', peers, dropAt + ORIGIN_FALLBACK_MS + 1, Infinity)).toEqual(theirs)
  })

  it('a chunk a holder says it no longer has counts as freed at that moment', () => {
    // c: a chunk of o's groups; x holds it and one more
    const c = range(0, count).find(i => claimOwner(i, ['self', 'o']) === 'o')!
    const { wants, peers } = setup(count, { x: [c, c + 1], o: [] })
    peers.get('x')!.active = false
    wants.dontHave(peers.get('x')!, [c], 5 * ORIGIN_FALLBACK_MS)
    expect(wants.freedAt(c)).toBe(5 * ORIGIN_FALLBACK_MS)
    expect(wants.freedAt(c + 1)).toBe(0)
    expect(selectOriginChunks(wants, 'self', peers, 5 * ORIGIN_FALLBACK_MS + 1, Infinity)).not.toContain(c)
    expect(selectOriginChunks(wants, 'self', peers, 6 * ORIGIN_FALLBACK_MS + 1, Infinity)).toContain(c)
  })
})
