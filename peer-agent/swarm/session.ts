/**
 * The fetching side of BLOCKS_PROTOCOL for one image version: the driver that dials peers,
 * reads their messages and sends what the planner decides. The state and the decisions live
 * apart (helia's bitswap split): the chunks' states in want-list.ts, each peer's ledger in
 * peer-ledger.ts, who may be dialled in peer-book.ts, and which peer is asked for which chunk
 * (rarest first, endgame) and which chunks go to the origin (the claim rule) in
 * request-planner.ts, what a received chunk is and how it is decoded and verified in received-chunk.ts.
 * Here: every chunk is verified (full BLAKE3) before the engine sees it, a
 * peer that sends a bad one is banned, stalled or slow peers are dropped (docs/ARCHITECTURE.md "Swarm").
 */
import type { Libp2p } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { MAX_INDICES_PER_MESSAGE, MAX_SWARM_CHUNKS, type ExchangeMessage } from '../../protocol/block-exchange.ts'
import { BLOCKS_PROTOCOL_PARTIAL, BLOCKS_PROTOCOLS } from '../../protocol/constants.ts'
import type { BlockServer } from './block-server.ts'
import { createChunkReceiver, type ReceivingPeer } from './chunk-receiver.ts'
import {
  CONNECT_TIMEOUT_MS, DEFAULT_SESSION_PEERS, ORIGIN_FALLBACK_MS, PEER_RETRY_BACKOFF_MS, REDIAL_INTERVAL_MS,
  REQUEST_TIMEOUT_MS, SETTLE_MS, SETTLE_STARTING_MS, STALL_TIMEOUT_MS
} from './constants.ts'
import { PeerProtocolError } from './errors.ts'
import { openBlockStream, type FramedStream, type HaveMessage } from './framed-stream.ts'
import type { AbortOptions, PeerAddress, ServedVersion, SwarmEvent, SwarmLogger, SwarmSession, SwarmSessionInit, SwarmSessionStats } from './interface.ts'
import { createPeerBook } from './peer-book.ts'
import { peerIdOf } from './peer-id.ts'
import { createPeerLedger, needsRefill, timeoutReason } from './peer-ledger.ts'
import { describeError, peerLog } from './peer-log.ts'
import { planRequests, selectOriginChunks } from './request-planner.ts'
import { createSettleWait, holdsWhatWeLack } from './settle.ts'
import { createWantList, HAD } from './want-list.ts'

/** What a session uses of its swarm node. */
export interface SwarmSessionComponents {
  libp2p: Libp2p
  server: BlockServer
  logger: SwarmLogger
  /** DHT lookups (absent when the DHT is off). */
  findProviders?: (image: string, version: string, options?: AbortOptions) => AsyncIterable<PeerAddress>
  announce?: (image: string, version: string, options?: AbortOptions) => Promise<void>
  /** Block-exchange protocol ids to propose, most preferred first (default BLOCKS_PROTOCOLS). */
  blockProtocols?: readonly string[]
}

/** A connected peer: its ledger, the chunks asked of it as blocks, and its block stream. */
interface SessionPeer extends ReceivingPeer {
  framed: FramedStream
  /** Its stream speaks BLOCKS_PROTOCOL_PARTIAL: chunks we hold some blocks of are asked for as those we lack. */
  partial: boolean
}

/** Creates a session; nothing happens until start(). */
export function createSwarmSession (components: SwarmSessionComponents, init: SwarmSessionInit): SwarmSession {
  const { libp2p, server, logger } = components
  const { manifest, image, version } = init
  const self = libp2p.peerId.toString()
  const chunkCount = manifest.chunks.length
  if (chunkCount > MAX_SWARM_CHUNKS) throw new RangeError(`${image}@${version} has ${chunkCount} chunks, over the swarm limit of ${MAX_SWARM_CHUNKS}`)
  if (init.onChunk == null && init.onChunkParts == null) throw new TypeError('a session needs onChunk or onChunkParts')
  const wants = createWantList<SessionPeer>(chunkCount, i => manifest.chunks[i].length, init.need)
  // the blocks of a chunk we lack (partial requests), when the engine can take blocks
  const lacking = init.onChunkBlocks != null ? init.lackingBlocks : undefined
  // chunks whose blocks matched but did not make a verified chunk: asked for whole from now on
  const wholeOnly = new Set<number>()
  const peers = new Map<string, SessionPeer>()
  const book = createPeerBook()
  const dialing = new Set<string>()
  const retryBackoffMs = init.retryBackoffMs ?? PEER_RETRY_BACKOFF_MS
  const timeouts = { stallMs: init.stallTimeoutMs ?? STALL_TIMEOUT_MS, requestMs: init.requestTimeoutMs ?? REQUEST_TIMEOUT_MS }
  const stats: SwarmSessionStats = {
    bytesFromPeers: 0, wireBytesFromPeers: 0, chunksFromPeers: 0, partsFromPeers: 0, byPeer: {}, duplicateBytes: 0, chunksForOrigin: 0, banned: []
  }
  const blockProtocols = components.blockProtocols ?? BLOCKS_PROTOCOLS
  const controller = new AbortController()
  const signal = init.signal != null ? AbortSignal.any([init.signal, controller.signal]) : controller.signal
  const cleanups: Array<() => void> = []
  const where = `${image}@${version}`
  let closed = false
  let started = false
  let pumpScheduled = false
  // no origin chunks while peers that start with us may still come (settle.ts)
  const settle = createSettleWait((init.peers ?? []).map(peerIdOf).filter(id => id != null && id !== self) as string[])
  let served: ServedVersion | undefined
  let changeWaiters: Array<() => void> = []
  let resolveDone!: () => void
  const done = new Promise<void>(resolve => { resolveDone = resolve })
  if (wants.remaining === 0) resolveDone()

  const receiver = createChunkReceiver<SessionPeer>(
    { wants, stats, server, logger, session: { drop, ban, markHad, schedulePump, landed } },
    { image, version, manifest, onChunk: init.onChunk, onChunkParts: init.onChunkParts, onChunkBlocks: init.onChunkBlocks, wholeOnly }
  )
  const emit = (e: SwarmEvent): void => { try { init.onEvent?.(e) } catch {} }
  const participants = (): string[] => [...peers.values()].filter(p => p.active && !p.closed).map(p => p.id)
  const notifyChange = (): void => { const waiting = changeWaiters; changeWaiters = []; for (const f of waiting) f() }
  /** Listed peer `id` is connected or not coming: the last one ends the settle wait. */
  const arrived = (id: string): void => { if (settle.arrived(id)) notifyChange() }

  function schedulePump (): void {
    if (pumpScheduled || closed) return
    pumpScheduled = true
    setImmediate(pump)
  }

  /** Sends what the planner asks of each peer: WANT_BLOCKS for the chunks we hold some blocks of (where it speaks them), else WANT. */
  function pump (): void {
    pumpScheduled = false
    if (closed) return
    for (const [p, list] of planRequests(wants, peers.values(), performance.now())) {
      const messages: ExchangeMessage[] = []
      const whole: number[] = []
      for (const i of list) {
        const mask = p.partial && !wholeOnly.has(i) ? lacking?.(i) : undefined
        if (mask == null) { p.masks.delete(i); whole.push(i); continue }
        p.masks.set(i, mask)
        messages.push({ type: 'want-blocks', index: i, mask })
      }
      for (let k = 0; k < whole.length; k += MAX_INDICES_PER_MESSAGE) messages.push({ type: 'want', indices: whole.slice(k, k + MAX_INDICES_PER_MESSAGE) })
      p.framed.sendBatch(messages).catch(err => { drop(p, `send failed: ${describeError(err)}`) })
    }
  }

  /** Chunk i is here (from a peer or marked had): the other peers asked for it get a CANCEL. */
  function markHad (i: number): void {
    for (const o of wants.markHad(i)) o.framed.send({ type: 'cancel', indices: [i] }).catch(() => {})
  }

  /** Drops a peer (its requests go to others); it is dialled again after `backoffMs` unless banned. */
  function drop (p: SessionPeer, reason: string, backoffMs = retryBackoffMs): void {
    if (p.closed) return
    p.closed = true
    peers.delete(p.id)
    wants.forget(p, performance.now())
    p.framed.stream.abort(new Error(reason))
    book.backOff(p.id, performance.now() + backoffMs)
    if (!closed) {
      logger.info(`swarm: ${where}: dropped peer ${p.id}: ${reason}`)
      emit({ type: 'peer.dropped', peerId: p.id, reason })
    }
    notifyChange()
    schedulePump()
  }

  function ban (p: SessionPeer, index: number, reason: string): void {
    book.ban(p.id)
    stats.banned.push(p.id)
    logger.warn(`swarm: ${where}: banned peer ${p.id} for this sync: chunk ${index}: ${reason}`)
    emit({ type: 'peer.banned', peerId: p.id, index, reason })
    drop(p, `banned: ${reason}`)
    libp2p.hangUp(peerIdFromString(p.id)).catch(() => {})
  }

  /**
   * A stalled or too slow peer is dropped (its requests go to others) and tried again after a
   * back-off that doubles each time in the session: a slow-loris peer would otherwise hold chunks
   * (its have-map keeps them from the origin) for a timeout out of every back-off. Not banned: an
   * honest peer can be slow for a while (its upload cap, a loaded machine).
   */
  function slow (p: SessionPeer, reason: string): void {
    const { times, backoffMs } = book.strike(p.id, retryBackoffMs)
    drop(p, times > 1 ? `${reason} (${times} times)` : reason, backoffMs)
  }

  function checkTimeouts (): void {
    const now = performance.now()
    for (const p of [...peers.values()]) {
      const reason = timeoutReason(p, p.framed.lastByteAt, now, timeouts)
      if (reason != null) slow(p, reason)
    }
  }

  /** Chunk i from p is verified and the engine's: announced (when `announce`), waiters woken, p refilled. */
  function landed (p: SessionPeer, i: number, announce: boolean): void {
    if (announce) served?.announce([i])
    if (wants.remaining === 0) resolveDone()
    notifyChange()
    if (needsRefill(p)) schedulePump()
  }

  function onHave (p: SessionPeer, bitmap: Uint8Array | undefined, indices: readonly number[] | undefined): void {
    // progress (what keeps a claim owner's chunks its own, ORIGIN_FALLBACK_MS) is a chunk it did not
    // announce before: re-announcing what it has would hold its share of the image hostage
    if (wants.addHave(p, bitmap, indices) > 0) p.lastProgressAt = performance.now()
    notifyChange()
    schedulePump()
  }

  /** Acts on one message of p; false when the stream is done with. */
  async function onMessage (p: SessionPeer, m: ExchangeMessage): Promise<boolean> {
    switch (m.type) {
      case 'have':
        if (m.count !== chunkCount) throw new PeerProtocolError(`have-map of ${m.count} chunks, the manifest has ${chunkCount}`)
        p.active = m.active
        onHave(p, m.bitmap, undefined)
        return true
      case 'have-update':
        onHave(p, undefined, m.indices)
        return true
      case 'block': case 'block-zstd':
        await receiver.onBlock(p, m.index, m)
        return true
      case 'block-part':
        receiver.onPart(p, m.index, m)
        return true
      case 'dont-have':
        if (wants.dontHave(p, m.indices, performance.now()) > 0) schedulePump()
        return true
      case 'error':
        drop(p, `peer error ${m.code}: ${m.message}`)
        return false
      default:
        throw new PeerProtocolError(`unexpected ${m.type} message`)
    }
  }

  async function readLoop (p: SessionPeer): Promise<void> {
    while (!p.closed) {
      let m: ExchangeMessage | undefined
      try {
        m = await p.framed.next()
      } catch (err) {
        if (!p.closed) peerLog(logger, err, 'warn')(`swarm: closing stream to ${p.id}: ${describeError(err)}`)
        drop(p, describeError(err))
        return
      }
      if (p.closed) return
      if (m == null) { drop(p, 'stream ended'); return }
      try {
        if (!await onMessage(p, m)) return
      } catch (err) {
        logger.warn(`swarm: closing stream to ${p.id}: ${(err as Error).message}`)
        drop(p, (err as Error).message)
        return
      }
    }
  }

  /** Whether a peer need not be dialled: ourselves, banned or backing off, connected, or being dialled. */
  const skip = (id: string, now: number): boolean => id === self || book.isBlocked(id, now) || peers.has(id) || dialing.has(id)

  /** A peer that answered with its have-map: from now on it is asked for chunks. */
  function addPeer (id: string, framed: FramedStream, have: HaveMessage): void {
    const partial = framed.stream.protocol === BLOCKS_PROTOCOL_PARTIAL
    const p: SessionPeer = Object.assign(createPeerLedger(id, chunkCount, have.active, performance.now()), { framed, partial, masks: new Map() })
    peers.set(id, p)
    arrived(id)
    onHave(p, have.bitmap, undefined)
    emit({ type: 'peer.connected', peerId: id })
    readLoop(p).catch(err => { drop(p, describeError(err)) })
  }

  async function connect (target: { peerId?: string, multiaddrs?: string[] }): Promise<void> {
    if (closed) return
    const now = performance.now()
    const known = target.peerId
    if ((known != null && skip(known, now)) || peers.size >= DEFAULT_SESSION_PEERS) return
    const dialKey = known ?? (target.multiaddrs ?? []).join(',')
    if (dialing.has(dialKey)) return
    dialing.add(dialKey)
    let id = known
    try {
      const dialSignal = AbortSignal.any([signal, AbortSignal.timeout(CONNECT_TIMEOUT_MS)])
      const addrs = target.multiaddrs != null && target.multiaddrs.length > 0 ? target.multiaddrs.map(a => multiaddr(a)) : peerIdFromString(known as string)
      const connection = await libp2p.dial(addrs, { signal: dialSignal })
      const remote = connection.remotePeer.toString()
      if (remote === self || book.isBlocked(remote, now) || peers.has(remote) || (remote !== dialKey && dialing.has(remote))) return
      id = remote
      dialing.add(id)
      const opened = await openBlockStream(connection, init.capability, dialSignal, blockProtocols)
      if ('refused' in opened) {
        logger.info(`swarm: ${where}: peer ${id} refused: ${opened.refused}`)
        if (!opened.notServing) arrived(id)
        else settle.starting(id, performance.now())
        // not serving the version yet: asked again at the next redial tick (half an interval: a whole one missed it)
        book.backOff(id, performance.now() + (opened.notServing ? REDIAL_INTERVAL_MS / 2 : retryBackoffMs))
        return
      }
      if (opened.have.count !== chunkCount) throw new PeerProtocolError(`have-map of ${opened.have.count} chunks, the manifest has ${chunkCount}`)
      if (closed || book.isBanned(id) || peers.has(id)) { opened.framed.stream.abort(new Error('not needed')); return }
      addPeer(id, opened.framed, opened.have)
    } catch (err) {
      if (!closed) peerLog(logger, err, 'info')(`swarm: ${where}: cannot fetch from ${id ?? dialKey}: ${describeError(err)}`)
      if (id != null) { book.backOff(id, performance.now() + retryBackoffMs); arrived(id) }
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

  /** Closes the session when init.signal aborts; false when it already has. */
  async function followAbort (): Promise<boolean> {
    if (init.signal == null) return true
    if (init.signal.aborted) { await session.close(); return false }
    const onAbort = (): void => { void session.close() }
    init.signal.addEventListener('abort', onAbort, { once: true })
    cleanups.push(() => { init.signal?.removeEventListener('abort', onAbort) })
    return true
  }

  /** Peers that fetch this version from us, or identify as block servers, are dialled at once. */
  function listenForPeers (): void {
    // a peer fetching this version from us serves it too (or will in a moment): connect now, whatever refused before
    cleanups.push(server.onInbound(image, version, peerId => { book.forgive(peerId); void connect({ peerId }) }))
    const onIdentify = (evt: CustomEvent<{ peerId: { toString: () => string }, protocols: string[] }>): void => {
      if (evt.detail.protocols.some(id => blockProtocols.includes(id))) void connect({ peerId: evt.detail.peerId.toString() })
    }
    libp2p.addEventListener('peer:identify', onIdentify as any)
    cleanups.push(() => { libp2p.removeEventListener('peer:identify', onIdentify as any) })
  }

  function startTimers (): void {
    const timeoutCheck = setInterval(checkTimeouts, Math.min(1000, timeouts.stallMs / 2))
    const redial = setInterval(() => { void connectKnown() }, REDIAL_INTERVAL_MS)
    settle.begin(performance.now(), SETTLE_MS, SETTLE_STARTING_MS)
    const settled = [SETTLE_MS, SETTLE_STARTING_MS].map(ms => setTimeout(notifyChange, ms + 1))
    cleanups.push(() => { clearInterval(timeoutCheck); clearInterval(redial); settled.forEach(clearTimeout) })
  }

  /** DHT: dials the providers of the version, and announces us as one when we serve it. */
  function useDht (): void {
    const find = components.findProviders
    if (find != null) {
      void (async () => {
        try {
          for await (const provider of find(image, version, { signal })) {
            void connect({ peerId: provider.peerId, multiaddrs: provider.multiaddrs.map(a => a.includes('/p2p/') ? a : `${a}/p2p/${provider.peerId}`) })
          }
        } catch (err) {
          if (!closed) logger.info(`swarm: ${where}: provider lookup ended: ${describeError(err)}`)
        }
      })()
    }
    if (served != null && components.announce != null) {
      components.announce(image, version, { signal }).catch(err => { if (!closed) logger.info(`swarm: ${where}: DHT announce failed: ${describeError(err)}`) })
    }
  }

  const session: SwarmSession = {
    async start () {
      if (started) return
      started = true
      if (!await followAbort()) return
      if (init.provider != null) served = server.serve({ image, version, chunkCount, provider: init.provider, active: true })
      listenForPeers()
      startTimers()
      // Wait for the known peers' have-maps (bounded by CONNECT_TIMEOUT_MS) so the first originChunks() already sees them.
      await connectKnown()
      settle.joined([...peers.values()].some(p => p.active && holdsWhatWeLack(p.have, chunkCount, i => wants.stateOf(i) === HAD)))
      useDht()
      schedulePump()
    },
    markHave (i) {
      if (i < 0 || i >= chunkCount) return
      // Not needed (e.g. found on disk after start): still tell peers we have it now.
      if (wants.stateOf(i) === HAD) { served?.announce([i]); return }
      markHad(i)
      served?.announce([i])
      if (wants.remaining === 0) resolveDone()
      notifyChange()
      schedulePump()
    },
    listed (addrs) {
      for (const a of addrs) {
        const id = peerIdOf(a)
        if (id == null || id === self || peers.has(id)) continue
        settle.listedLater(id, performance.now())
        void connect({ multiaddrs: [a], peerId: id })
      }
    },
    release (indices) {
      wants.release(indices)
      notifyChange()
      schedulePump()
    },
    originChunks (max = Number.POSITIVE_INFINITY) {
      const now = performance.now()
      if (settle.settling(now)) return []
      const mine = selectOriginChunks(wants, self, peers, now, max)
      wants.reserveForOrigin(mine)
      if (stats.chunksForOrigin === 0 && mine.length > 0) logger.debug?.(`swarm: ${where}: ${settle.describeFirst(mine.length, now, participants())}`)
      stats.chunksForOrigin += mine.length
      return mine
    },
    availability: (i) => wants.availability(i),
    remaining: () => wants.remaining,
    async waitForChange (options = {}) {
      if (wants.remaining === 0 || closed) return
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
