/**
 * The fetching side of BLOCKS_PROTOCOL for one image version: dials peers,
 * keeps their have-maps, requests chunks rarest-first from several peers in
 * parallel with per-peer pipelining, duplicates the last requests (endgame),
 * drops stalled or slow peers, verifies every chunk (full BLAKE3) before the
 * engine sees it, and bans a peer that sends a bad one. It also answers the
 * engine's "what should I take from the origin" with the claim rule of
 * docs/ARCHITECTURE.md "Swarm".
 */
import type { Libp2p } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { verifyChunk } from '../../chunker/blake3.ts'
import { bitmapHas, claimOwner, ErrorCode, MAX_INDICES_PER_MESSAGE, MAX_SWARM_CHUNKS, type ExchangeMessage } from '../../protocol/block-exchange.ts'
import { BLOCKS_PROTOCOL } from '../../protocol/constants.ts'
import { describe, peerLog, type BlockServer } from './block-server.ts'
import {
  DEFAULT_SESSION_PEERS, ENDGAME_DUPLICATES, HELLO_TIMEOUT_MS, ORIGIN_FALLBACK_MS, PEER_RETRY_BACKOFF_MS, PIPELINE_BYTES,
  MAX_SLOW_BACKOFF_DOUBLINGS, PIPELINE_MAX_BYTES, PIPELINE_MAX_REQUESTS, PIPELINE_MIN_REQUESTS, PIPELINE_SECONDS, REDIAL_INTERVAL_MS, REQUEST_TIMEOUT_MS, SETTLE_MS, STALL_TIMEOUT_MS, CONNECT_TIMEOUT_MS
} from './constants.ts'
import { frameStream, type FramedStream } from './framed-stream.ts'
import type { AbortOptions, PeerAddress, ServedVersion, SwarmEvent, SwarmLogger, SwarmSession, SwarmSessionInit, SwarmSessionStats } from './interface.ts'

/** What a session uses of its swarm node. */
export interface SwarmSessionComponents {
  libp2p: Libp2p
  server: BlockServer
  logger: SwarmLogger
  /** DHT lookups (absent when the DHT is off). */
  findProviders?: (image: string, version: string, options?: AbortOptions) => AsyncIterable<PeerAddress>
  announce?: (image: string, version: string, options?: AbortOptions) => Promise<void>
}

// Per-chunk state.
const HAD = 0 // not needed (had before, received, or marked had)
const WANTED = 1 // needed, not requested
const INFLIGHT = 2 // requested from one or more peers
const ORIGIN = 3 // reserved for the engine's origin fetch

interface PeerState {
  id: string
  framed: FramedStream
  have: Uint8Array
  active: boolean
  /** index -> performance.now() when requested */
  inflight: Map<number, number>
  inflightBytes: number
  /** Requests cancelled in endgame whose BLOCK may still arrive. */
  cancelled: Set<number>
  lastProgressAt: number
  closed: boolean
  /** Bytes this peer may have requested and not delivered (PIPELINE_BYTES at first, then sized by its rate). */
  pipelineBytes: number
  /** Delivery rate estimate in bytes/s, and the bytes and start of the current measuring window. */
  rate: number
  rateBytes: number
  rateSince: number
}

// A peer's delivery rate is sampled over windows of at least this long.
const RATE_WINDOW_MS = 100

/** The peer id in a multiaddr's /p2p/ component, if any. */
function peerIdOf (addr: string): string | undefined {
  try {
    return multiaddr(addr).getComponents().find(c => c.name === 'p2p')?.value
  } catch {
    return undefined
  }
}

/** Creates a session; nothing happens until start(). */
export function createSwarmSession (components: SwarmSessionComponents, init: SwarmSessionInit): SwarmSession {
  const { libp2p, server, logger } = components
  const { manifest, image, version } = init
  const self = libp2p.peerId.toString()
  const n = manifest.chunks.length
  if (n > MAX_SWARM_CHUNKS) throw new RangeError(`${image}@${version} has ${n} chunks, over the swarm limit of ${MAX_SWARM_CHUNKS}`)
  if (init.onChunk == null && init.onChunkParts == null) throw new TypeError('a session needs onChunk or onChunkParts')
  const state = new Uint8Array(n)
  const avail = new Uint16Array(n)
  const inPending = new Uint8Array(n)
  const pending: number[] = []
  const inflightFrom = new Map<number, Set<string>>()
  const peers = new Map<string, PeerState>()
  const banned = new Set<string>()
  /** Times each peer was dropped as stalled or too slow in this session. */
  const strikes = new Map<string, number>()
  const backoff = new Map<string, number>()
  const retryBackoffMs = init.retryBackoffMs ?? PEER_RETRY_BACKOFF_MS
  const dialing = new Set<string>()
  const stats: SwarmSessionStats = { bytesFromPeers: 0, chunksFromPeers: 0, byPeer: {}, duplicateBytes: 0, chunksForOrigin: 0, banned: [] }
  const controller = new AbortController()
  const signal = init.signal != null ? AbortSignal.any([init.signal, controller.signal]) : controller.signal
  const cleanups: Array<() => void> = []
  let remaining = 0
  let closed = false
  let started = false
  let pumpScheduled = false
  let settleUntil = Number.POSITIVE_INFINITY
  let served: ServedVersion | undefined
  let changeWaiters: Array<() => void> = []
  let resolveDone!: () => void
  const done = new Promise<void>(resolve => { resolveDone = resolve })

  for (const i of init.need ?? manifest.chunks.keys()) {
    if (!Number.isSafeInteger(i) || i < 0 || i >= n) throw new RangeError(`need: chunk index ${i} out of range`)
    if (state[i] !== WANTED) { state[i] = WANTED; remaining++; pending.push(i); inPending[i] = 1 }
  }
  if (remaining === 0) resolveDone()

  const emit = (e: SwarmEvent): void => { try { init.onEvent?.(e) } catch {} }
  const notifyChange = (): void => { const w = changeWaiters; changeWaiters = []; for (const f of w) f() }
  const chunkBytes = (i: number): number => manifest.chunks[i].length
  const hasCapacity = (p: PeerState): boolean => !p.closed && (p.inflight.size < PIPELINE_MIN_REQUESTS || (p.inflightBytes < p.pipelineBytes && p.inflight.size < PIPELINE_MAX_REQUESTS))

  function addPending (i: number): void {
    if (inPending[i] === 0) { inPending[i] = 1; pending.push(i) }
  }

  function schedulePump (): void {
    if (pumpScheduled || closed) return
    pumpScheduled = true
    setImmediate(pump)
  }

  function request (p: PeerState, i: number, wants: Map<PeerState, number[]>): void {
    state[i] = INFLIGHT
    p.inflight.set(i, performance.now())
    p.inflightBytes += chunkBytes(i)
    let from = inflightFrom.get(i)
    if (from == null) { from = new Set(); inflightFrom.set(i, from) }
    from.add(p.id)
    let list = wants.get(p)
    if (list == null) { list = []; wants.set(p, list) }
    list.push(i)
  }

  function pump (): void {
    pumpScheduled = false
    if (closed) return
    const ready = [...peers.values()].filter(hasCapacity)
    if (ready.length === 0) return
    let w = 0
    for (const i of pending) if (state[i] === WANTED) pending[w++] = i; else inPending[i] = 0
    pending.length = w
    // Rarest first: bucket wanted chunks by how many peers have them; a random
    // rotation inside a bucket keeps peers that start together apart.
    const buckets: number[][] = []
    for (const i of pending) { const a = avail[i]; if (a > 0) (buckets[a] ??= []).push(i) }
    const wants = new Map<PeerState, number[]>()
    let unassigned = 0
    let full = false
    for (const bucket of buckets) {
      if (bucket == null) continue
      const start = Math.floor(Math.random() * bucket.length)
      for (let k = 0; k < bucket.length; k++) {
        const i = bucket[(start + k) % bucket.length]
        // Every peer is full: the endgame below is skipped anyway, so stop scanning.
        if (full) break
        let best: PeerState | undefined
        for (const p of ready) if (hasCapacity(p) && bitmapHas(p.have, i) && (best == null || p.inflightBytes < best.inflightBytes)) best = p
        if (best == null) { unassigned++; continue }
        request(best, i, wants)
        if (!ready.some(hasCapacity)) full = true
      }
      if (full) break
    }
    // Endgame: nothing left to ask for the first time, so ask a second peer
    // for what is still in flight; the first copy to verify wins, the rest is cancelled.
    if (unassigned === 0 && !full) {
      for (const [i, from] of inflightFrom) {
        if (from.size >= ENDGAME_DUPLICATES) continue
        let best: PeerState | undefined
        for (const p of ready) if (hasCapacity(p) && !from.has(p.id) && bitmapHas(p.have, i) && (best == null || p.inflightBytes < best.inflightBytes)) best = p
        if (best != null) request(best, i, wants)
      }
    }
    for (const [p, list] of wants) {
      for (let k = 0; k < list.length; k += MAX_INDICES_PER_MESSAGE) {
        p.framed.send({ type: 'want', indices: list.slice(k, k + MAX_INDICES_PER_MESSAGE) }).catch(err => { drop(p, `send failed: ${describe(err)}`) })
      }
    }
  }

  function releaseInflight (p: PeerState, i: number): void {
    p.inflight.delete(i)
    p.inflightBytes -= chunkBytes(i)
    const from = inflightFrom.get(i)
    from?.delete(p.id)
    if (from != null && from.size === 0) {
      inflightFrom.delete(i)
      if (state[i] === INFLIGHT) { state[i] = WANTED; addPending(i) }
    }
  }

  /** Drops a peer (its requests go to others); it is dialled again after `backoffMs` unless banned. */
  function drop (p: PeerState, reason: string, backoffMs = retryBackoffMs): void {
    if (p.closed) return
    p.closed = true
    peers.delete(p.id)
    for (const i of [...p.inflight.keys()]) releaseInflight(p, i)
    for (let i = 0; i < n; i++) if (bitmapHas(p.have, i)) avail[i]--
    p.framed.stream.abort(new Error(reason))
    if (!banned.has(p.id)) backoff.set(p.id, performance.now() + backoffMs)
    if (!closed) {
      logger.info(`swarm: ${image}@${version}: dropped peer ${p.id}: ${reason}`)
      emit({ type: 'peer.dropped', peerId: p.id, reason })
    }
    notifyChange()
    schedulePump()
  }

  function ban (p: PeerState, index: number, reason: string): void {
    banned.add(p.id)
    stats.banned.push(p.id)
    logger.warn(`swarm: ${image}@${version}: banned peer ${p.id} for this sync: chunk ${index}: ${reason}`)
    emit({ type: 'peer.banned', peerId: p.id, index, reason })
    drop(p, `banned: ${reason}`)
    libp2p.hangUp(peerIdFromString(p.id)).catch(() => {})
  }

  function setHave (p: PeerState, bitmap: Uint8Array | undefined, indices: number[] | undefined): void {
    let added = 0
    if (bitmap != null) {
      for (let i = 0; i < n; i++) {
        const had = bitmapHas(p.have, i)
        const has = bitmapHas(bitmap, i)
        if (had !== has) { avail[i] += has ? 1 : -1; if (has) added++ }
      }
      p.have = bitmap.slice()
    }
    for (const i of indices ?? []) {
      if (i >= n) throw new Error(`have-update of chunk ${i} past the end (${n})`)
      if (!bitmapHas(p.have, i)) { p.have[i >> 3] |= 1 << (i & 7); avail[i]++; added++ }
    }
    // progress (what keeps a claim owner's chunks its own, ORIGIN_FALLBACK_MS) is a chunk it did not
    // announce before: re-announcing what it has would hold its share of the image hostage
    if (added > 0) p.lastProgressAt = performance.now()
    notifyChange()
    schedulePump()
  }

  // `parts`: the chunk as received (several pieces when it spanned transport messages), hashed
  // and handed on as they are; `bytes` joins them, read only for an onChunk consumer.
  async function onBlock (p: PeerState, i: number, m: { bytes: Uint8Array, parts?: readonly Uint8Array[] }): Promise<void> {
    const parts = m.parts ?? [m.bytes]
    let length = 0
    for (const part of parts) length += part.length
    measureRate(p, length)
    if (i >= n || !p.inflight.has(i)) {
      if (i < n && p.cancelled.delete(i)) { stats.duplicateBytes += length; return }
      drop(p, `sent chunk ${i} that was not requested`)
      return
    }
    releaseInflightKeepState(p, i)
    if (state[i] === HAD || state[i] === ORIGIN) { stats.duplicateBytes += length; afterInflightChange(p, i); return }
    try {
      if (length !== chunkBytes(i)) throw new Error(`chunk ${i} has ${length} bytes, the manifest says ${chunkBytes(i)}`)
      verifyChunk(parts, manifest.chunks[i].digest)
    } catch (err) {
      ban(p, i, (err as Error).message)
      afterInflightChange(p, i)
      return
    }
    // First verified copy: cancel the endgame duplicates.
    const others = inflightFrom.get(i)
    inflightFrom.delete(i)
    for (const id of others ?? []) {
      const o = peers.get(id)
      if (o == null || !o.inflight.has(i)) continue
      o.inflight.delete(i)
      o.inflightBytes -= chunkBytes(i)
      o.cancelled.add(i)
      o.framed.send({ type: 'cancel', indices: [i] }).catch(() => {})
    }
    state[i] = HAD
    remaining--
    stats.bytesFromPeers += length
    stats.chunksFromPeers++
    stats.byPeer[p.id] = (stats.byPeer[p.id] ?? 0) + length
    try {
      if (init.onChunkParts != null) await init.onChunkParts(i, parts, p.id)
      else await init.onChunk?.(i, m.bytes, p.id)
    } catch (err) {
      logger.warn(`swarm: ${image}@${version}: writing chunk ${i} failed: ${describe(err)}`)
      state[i] = WANTED
      remaining++
      addPending(i)
      schedulePump()
      return
    }
    served?.announce([i])
    if (remaining === 0) resolveDone()
    notifyChange()
    // Refill at half the window (by bytes and by count), not per chunk: one WANT per refill, one scan per refill.
    if ((p.inflightBytes <= p.pipelineBytes / 2 && p.inflight.size <= PIPELINE_MAX_REQUESTS / 2) || p.inflight.size < PIPELINE_MIN_REQUESTS) schedulePump()
  }

  // Sizes a peer's pipeline to PIPELINE_SECONDS of what it delivers (PIPELINE_BYTES to PIPELINE_MAX_BYTES):
  // a fast peer's grows, a slow one's shrinks so its requests wait about PIPELINE_SECONDS.
  function measureRate (p: PeerState, bytes: number): void {
    const now = performance.now()
    p.rateBytes += bytes
    const ms = now - p.rateSince
    if (ms < RATE_WINDOW_MS) return
    const sample = p.rateBytes * 1000 / ms
    p.rate = p.rate === 0 ? sample : (p.rate + sample) / 2
    p.rateBytes = 0
    p.rateSince = now
    p.pipelineBytes = Math.max(PIPELINE_BYTES, Math.min(PIPELINE_MAX_BYTES, p.rate * PIPELINE_SECONDS))
  }

  // Removes i from p's requests without touching the chunk's state (onBlock decides it).
  function releaseInflightKeepState (p: PeerState, i: number): void {
    p.inflight.delete(i)
    p.inflightBytes -= chunkBytes(i)
    inflightFrom.get(i)?.delete(p.id)
  }

  function afterInflightChange (p: PeerState, i: number): void {
    const from = inflightFrom.get(i)
    if (from != null && from.size === 0) inflightFrom.delete(i)
    if (state[i] === INFLIGHT && (from == null || from.size === 0)) { state[i] = WANTED; addPending(i) }
    schedulePump()
  }

  async function readLoop (p: PeerState): Promise<void> {
    while (!p.closed) {
      let m: ExchangeMessage | undefined
      try {
        m = await p.framed.next()
      } catch (err) {
        if (!p.closed) peerLog(logger, err, 'warn')(`swarm: closing stream to ${p.id}: ${describe(err)}`)
        drop(p, describe(err))
        return
      }
      if (p.closed) return
      if (m == null) { drop(p, 'stream ended'); return }
      try {
        switch (m.type) {
          case 'have':
            if (m.count !== n) throw new Error(`have-map of ${m.count} chunks, the manifest has ${n}`)
            p.active = m.active
            setHave(p, m.bitmap, undefined)
            break
          case 'have-update':
            setHave(p, undefined, m.indices)
            break
          case 'block':
            await onBlock(p, m.index, m)
            break
          case 'dont-have':
            for (const i of m.indices) {
              if (i >= n) throw new Error(`dont-have of chunk ${i} past the end`)
              if (bitmapHas(p.have, i)) { p.have[i >> 3] &= ~(1 << (i & 7)); avail[i]-- }
              if (p.inflight.has(i)) { releaseInflightKeepState(p, i); afterInflightChange(p, i) }
            }
            break
          case 'error':
            drop(p, `peer error ${m.code}: ${m.message}`)
            return
          default:
            throw new Error(`unexpected ${m.type} message`)
        }
      } catch (err) {
        logger.warn(`swarm: closing stream to ${p.id}: ${(err as Error).message}`)
        drop(p, (err as Error).message)
        return
      }
    }
  }

  async function connect (target: { peerId?: string, multiaddrs?: string[] }): Promise<void> {
    if (closed) return
    const now = performance.now()
    const known = target.peerId
    if (known != null && (known === self || banned.has(known) || peers.has(known) || dialing.has(known) || (backoff.get(known) ?? 0) > now)) return
    if (peers.size >= DEFAULT_SESSION_PEERS) return
    const dialKey = known ?? (target.multiaddrs ?? []).join(',')
    if (dialing.has(dialKey)) return
    dialing.add(dialKey)
    let id = known
    try {
      const dialSignal = AbortSignal.any([signal, AbortSignal.timeout(CONNECT_TIMEOUT_MS)])
      const connection = await libp2p.dial(target.multiaddrs != null && target.multiaddrs.length > 0 ? target.multiaddrs.map(a => multiaddr(a)) : peerIdFromString(known as string), { signal: dialSignal })
      const remote = connection.remotePeer.toString()
      if (remote === self || banned.has(remote) || peers.has(remote) || (remote !== dialKey && dialing.has(remote)) || (backoff.get(remote) ?? 0) > now) return
      id = remote
      dialing.add(id)
      const stream = await connection.newStream(BLOCKS_PROTOCOL, { signal: dialSignal })
      const framed = frameStream(stream)
      await framed.send({ type: 'hello', capability: init.capability })
      const first = await framed.next(HELLO_TIMEOUT_MS)
      if (first == null || first.type !== 'have') {
        const why = first == null ? 'closed the stream' : first.type === 'error' ? `error ${first.code}: ${first.message}` : `sent ${first.type} before have`
        logger.info(`swarm: ${image}@${version}: peer ${id} refused: ${why}`)
        stream.abort(new Error(why))
        // NOT_SERVING: a peer of the version that has not started serving it yet (e.g. still
        // getting the manifest): asked again soon, not after the full back-off
        const notServing = first?.type === 'error' && first.code === ErrorCode.NOT_SERVING
        backoff.set(id, performance.now() + (notServing ? REDIAL_INTERVAL_MS : retryBackoffMs))
        return
      }
      if (first.count !== n) throw new Error(`have-map of ${first.count} chunks, the manifest has ${n}`)
      if (closed || banned.has(id) || peers.has(id)) { stream.abort(new Error('not needed')); return }
      const p: PeerState = { id, framed, have: new Uint8Array(Math.ceil(n / 8)), active: first.active, inflight: new Map(), inflightBytes: 0, cancelled: new Set(), lastProgressAt: performance.now(), closed: false, pipelineBytes: PIPELINE_BYTES, rate: 0, rateBytes: 0, rateSince: performance.now() }
      peers.set(id, p)
      setHave(p, first.bitmap, undefined)
      emit({ type: 'peer.connected', peerId: id })
      readLoop(p).catch(err => { drop(p, describe(err)) })
    } catch (err) {
      if (!closed) peerLog(logger, err, 'info')(`swarm: ${image}@${version}: cannot fetch from ${id ?? dialKey}: ${describe(err)}`)
      if (id != null) backoff.set(id, performance.now() + retryBackoffMs)
    } finally {
      dialing.delete(dialKey)
      if (id != null && id !== known) dialing.delete(id)
    }
  }

  async function connectKnown (): Promise<void> {
    const tries: Array<Promise<void>> = []
    for (const c of libp2p.getConnections()) tries.push(connect({ peerId: c.remotePeer.toString() }))
    for (const a of init.peers ?? []) tries.push(connect({ multiaddrs: [a], peerId: peerIdOf(a) }))
    await Promise.all(tries)
  }

  const stallTimeoutMs = init.stallTimeoutMs ?? STALL_TIMEOUT_MS
  const requestTimeoutMs = init.requestTimeoutMs ?? REQUEST_TIMEOUT_MS

  function checkTimeouts (): void {
    const now = performance.now()
    for (const p of [...peers.values()]) {
      if (p.inflight.size === 0) continue
      // Silence counts from the later of the last byte and the oldest request still open.
      const oldest = Math.min(...p.inflight.values())
      if (now - Math.max(p.framed.lastByteAt, oldest) > stallTimeoutMs) { slow(p, `stalled: no data for ${stallTimeoutMs} ms`); continue }
      if (now - oldest > requestTimeoutMs) slow(p, `too slow: a chunk took over ${requestTimeoutMs} ms`)
    }
  }

  /**
   * A stalled or too slow peer is dropped (its requests go to others) and tried again after a
   * back-off that doubles each time in the session: a slow-loris peer would otherwise hold chunks
   * (its have-map keeps them from the origin) for a timeout out of every back-off. Not banned: an
   * honest peer can be slow for a while (its upload cap, a loaded machine).
   */
  function slow (p: PeerState, reason: string): void {
    const n = (strikes.get(p.id) ?? 0) + 1
    strikes.set(p.id, n)
    drop(p, n > 1 ? `${reason} (${n} times)` : reason, retryBackoffMs * 2 ** Math.min(n - 1, MAX_SLOW_BACKOFF_DOUBLINGS))
  }

  const session: SwarmSession = {
    async start () {
      if (started) return
      started = true
      if (init.signal != null) {
        const onAbort = (): void => { void session.close() }
        if (init.signal.aborted) { await session.close(); return }
        init.signal.addEventListener('abort', onAbort, { once: true })
        cleanups.push(() => { init.signal?.removeEventListener('abort', onAbort) })
      }
      if (init.provider != null) served = server.serve({ image, version, chunkCount: n, provider: init.provider, active: true })
      // a peer fetching this version from us serves it too (or will in a moment): connect now, whatever refused before
      cleanups.push(server.onInbound(image, version, peerId => { backoff.delete(peerId); void connect({ peerId }) }))
      const onIdentify = (evt: CustomEvent<{ peerId: { toString: () => string }, protocols: string[] }>): void => {
        if (evt.detail.protocols.includes(BLOCKS_PROTOCOL)) void connect({ peerId: evt.detail.peerId.toString() })
      }
      libp2p.addEventListener('peer:identify', onIdentify as any)
      cleanups.push(() => { libp2p.removeEventListener('peer:identify', onIdentify as any) })
      const timeouts = setInterval(checkTimeouts, Math.min(1000, stallTimeoutMs / 2))
      const redial = setInterval(() => { void connectKnown() }, REDIAL_INTERVAL_MS)
      settleUntil = performance.now() + SETTLE_MS
      const settled = setTimeout(notifyChange, SETTLE_MS + 1)
      cleanups.push(() => { clearInterval(timeouts); clearInterval(redial); clearTimeout(settled) })
      // Wait for the known peers' have-maps (bounded by CONNECT_TIMEOUT_MS) so the first originChunks() already sees them.
      await connectKnown()
      if (components.findProviders != null) {
        const find = components.findProviders
        void (async () => {
          try {
            for await (const p of find(image, version, { signal })) void connect({ peerId: p.peerId, multiaddrs: p.multiaddrs.map(a => a.includes('/p2p/') ? a : `${a}/p2p/${p.peerId}`) })
          } catch (err) {
            if (!closed) logger.info(`swarm: ${image}@${version}: provider lookup ended: ${describe(err)}`)
          }
        })()
      }
      if (served != null && components.announce != null) {
        components.announce(image, version, { signal }).catch(err => { if (!closed) logger.info(`swarm: ${image}@${version}: DHT announce failed: ${describe(err)}`) })
      }
      schedulePump()
    },
    markHave (i) {
      if (i < 0 || i >= n) return
      // Not needed (e.g. found on disk after start): still tell peers we have it now.
      if (state[i] === HAD) { served?.announce([i]); return }
      if (state[i] === INFLIGHT) {
        for (const id of inflightFrom.get(i) ?? []) {
          const p = peers.get(id)
          if (p == null || !p.inflight.has(i)) continue
          p.inflight.delete(i)
          p.inflightBytes -= chunkBytes(i)
          p.cancelled.add(i)
          p.framed.send({ type: 'cancel', indices: [i] }).catch(() => {})
        }
        inflightFrom.delete(i)
      }
      state[i] = HAD
      remaining--
      served?.announce([i])
      if (remaining === 0) resolveDone()
      notifyChange()
      schedulePump()
    },
    release (indices) {
      for (const i of indices) if (i >= 0 && i < n && state[i] === ORIGIN) { state[i] = WANTED; addPending(i) }
      notifyChange()
      schedulePump()
    },
    originChunks (max = Number.POSITIVE_INFINITY) {
      const now = performance.now()
      if (now < settleUntil) return []
      const participants = [self]
      for (const p of peers.values()) if (p.active && !p.closed) participants.push(p.id)
      const out: number[] = []
      for (let i = 0; i < n && out.length < max; i++) {
        if (state[i] !== WANTED || avail[i] > 0) continue
        const owner = participants.length === 1 ? self : claimOwner(i, participants)
        if (owner !== self) {
          const o = peers.get(owner as string)
          if (o != null && !o.closed && now - o.lastProgressAt < ORIGIN_FALLBACK_MS) continue
        }
        out.push(i)
      }
      for (const i of out) state[i] = ORIGIN
      stats.chunksForOrigin += out.length
      return out
    },
    availability: (i) => avail[i] ?? 0,
    remaining: () => remaining,
    async waitForChange (options = {}) {
      if (remaining === 0 || closed) return
      await new Promise<void>(resolve => {
        const timer = setTimeout(finish, options.timeoutMs ?? ORIGIN_FALLBACK_MS)
        const onAbort = (): void => { finish() }
        options.signal?.addEventListener('abort', onAbort, { once: true })
        function finish (): void {
          clearTimeout(timer)
          options.signal?.removeEventListener('abort', onAbort)
          resolve()
        }
        changeWaiters.push(finish)
      })
    },
    done,
    stats: () => ({ ...stats, byPeer: { ...stats.byPeer }, banned: [...stats.banned] }),
    peers: () => [...peers.keys()],
    async close () {
      if (closed) return
      closed = true
      controller.abort()
      for (const f of cleanups) f()
      // Reset rather than close: the serving side may be blocked writing chunks we no longer read.
      for (const p of [...peers.values()]) {
        p.closed = true
        p.framed.stream.abort(new Error('session closed'))
      }
      peers.clear()
      served?.close()
      notifyChange()
    }
  }
  return session
}
