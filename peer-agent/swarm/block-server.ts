/**
 * The serving side of BLOCKS_PROTOCOL: a peer must present, in its first
 * message, a capability signed by the coordinator for the image version and
 * bound to the peer id of its connection; only then does it get the have-map,
 * updates and chunks. Without one it learns nothing but an ERROR.
 */
import type { Connection, Stream } from '@libp2p/interface'
import {
  bitmapSet, ErrorCode, MAX_INDICES_PER_MESSAGE, MAX_SWARM_CHUNKS, maskFits, MessageTooLargeError, MalformedMessageError, pickBlocks, type ExchangeMessage
} from '../../protocol/block-exchange.ts'
import { verifyCapability, type Capability } from '../../protocol/capability.ts'
import { BLOCK_SIZE, BLOCKS_PROTOCOL_PARTIAL, BLOCKS_PROTOCOL_ZSTD } from '../../protocol/constants.ts'
import type { UploadPacer } from '../background-pacer.ts'
import { createRateLimiter, type RateLimiter } from '../rate-limiter.ts'
import { compressChunk } from './chunk-compression.ts'
import { createCompressedCache, type CompressedCache } from './compressed-cache.ts'
import { PeerProtocolError } from './errors.ts'
import { DEFAULT_MAX_PEERS, HAVE_UPDATE_FLUSH_MS, HELLO_TIMEOUT_MS, LAN_ZSTD_CACHE_BYTES, LAN_ZSTD_MAX_RATIO, WRITE_BATCH_BYTES } from './constants.ts'
import { frameStream, type FramedStream } from './framed-stream.ts'
import type { ServedVersion, ServeInit, SwarmLogger, SwarmServeStats } from './interface.ts'
import { describeError, isForeignCapability, peerLog } from './peer-log.ts'
import { createUploadQueue, type QueuedWant, type UploadQueue } from './upload-queue.ts'

/** Called when a peer with a valid capability for a served version opens a stream (so a session can fetch from it too). */
export type InboundListener = (peerId: string) => void

interface Subscriber {
  peerId: string
  framed: FramedStream
  pendingUpdates: number[]
  flushTimer?: ReturnType<typeof setTimeout>
  close: () => void
}

interface Served {
  init: ServeInit
  active: boolean
  subscribers: Set<Subscriber>
  /** Bumped each time serve() replaces the provider; handles of older generations are inert. */
  generation: number
}

/** One inbound block stream being answered: what is queued, and the writer's wake-up. */
interface Upload {
  queue: UploadQueue
  closed: boolean
  wake?: () => void
}

/** The serving half of a swarm node. */
export interface BlockServer {
  handle: (stream: Stream, connection: Connection) => Promise<void>
  serve: (init: ServeInit) => ServedVersion
  /** Registers a listener for inbound peers of image@version (returns an unsubscribe function). */
  onInbound: (image: string, version: string, listener: InboundListener) => () => void
  setCaps: (caps: { uploadBps?: number, maxPeers?: number }) => void
  /** Chunk bytes sent to peers since start: in total and per image@version key. */
  stats: () => SwarmServeStats
  /**
   * Keeps a chunk's zstd frame that a session received and verified, to send it on to other
   * peers without compressing it again (ignored unless image@version is served); with `mask`,
   * the frame of those blocks of the chunk (a BLOCK_PART), for peers that ask for the same ones.
   */
  keepCompressed: (image: string, version: string, index: number, rawLength: number, frame: Uint8Array, mask?: Uint8Array) => void
  /** Closes every inbound stream. */
  stop: () => void
}

/** What the server depends on. */
export interface BlockServerComponents {
  coordinatorKey: CryptoKey
  logger: SwarmLogger
  /** Background mode's pacer of uploads (peer-agent/background-pacer.ts), beside the upload cap. */
  uploadPacer?: UploadPacer
}

const versionKey = (image: string, version: string): string => `${image}@${version}`
/** The compressed cache's key of some blocks of chunk `index` (a whole chunk's is its index). */
const partKey = (index: number, mask: Uint8Array): string => `${index}/${Buffer.from(mask.buffer, mask.byteOffset, mask.length).toString('hex')}`
/** Whether a stream's protocol may carry zstd frames (BLOCK_ZSTD, compressed BLOCK_PART). */
const speaksZstd = (protocol: string | undefined): boolean => protocol === BLOCKS_PROTOCOL_ZSTD || protocol === BLOCKS_PROTOCOL_PARTIAL

/** Options of createBlockServer. */
export interface BlockServerInit {
  /** From policy: LAN upload cap in bytes per second (0 = none). */
  uploadBps?: number
  /** From policy: peers served at once (0 = DEFAULT_MAX_PEERS). */
  maxPeers?: number
  /** Bytes of compressed chunks kept to send again (default LAN_ZSTD_CACHE_BYTES). */
  compressedCacheBytes?: number
}

/** A chunk's message as it goes on a stream, and the chunk's own length. */
interface OutgoingChunk { message: ExchangeMessage & { bytes: Uint8Array }, rawLength: number }

/** A block server; caps from policy (uploadBps 0 = none; maxPeers 0 = DEFAULT_MAX_PEERS). */
export function createBlockServer (components: BlockServerComponents, init: BlockServerInit): BlockServer {
  const { logger } = components
  const served = new Map<string, Served>()
  const listenersByKey = new Map<string, Set<InboundListener>>()
  const streamsByPeer = new Map<string, number>()
  const open = new Set<Stream>()
  let limiter: RateLimiter = createRateLimiter(init.uploadBps ?? 0)
  let maxPeers = init.maxPeers != null && init.maxPeers > 0 ? init.maxPeers : DEFAULT_MAX_PEERS
  let stopping = false
  // Chunk bytes handed to the stream (counted once a batch is written), for the agent's servedBytes.
  let bytesServed = 0
  // The same chunk bytes as they went on the wire (smaller where compressed).
  let bytesSent = 0
  const bytesServedByVersion = new Map<string, number>()
  const compressed: CompressedCache = createCompressedCache(init.compressedCacheBytes ?? LAN_ZSTD_CACHE_BYTES)

  function bitmapOf (entry: Served): Uint8Array {
    const { chunkCount, provider } = entry.init
    const bitmap = new Uint8Array(Math.ceil(chunkCount / 8))
    for (let i = 0; i < chunkCount; i++) if (provider.has(i)) bitmapSet(bitmap, i)
    return bitmap
  }

  function sendHave (entry: Served, sub: Subscriber): void {
    sub.framed.send({ type: 'have', active: entry.active, count: entry.init.chunkCount, bitmap: bitmapOf(entry) }).catch(() => { sub.close() })
  }

  async function refuse (framed: FramedStream, code: number, message: string): Promise<void> {
    try {
      await framed.send({ type: 'error', code, message })
      await framed.stream.close({ signal: AbortSignal.timeout(1000) })
    } catch {
      framed.stream.abort(new Error(message))
    }
  }

  /**
   * Reads the HELLO and admits the peer: a valid capability for a version we serve, within
   * maxPeers (the peer is counted in streamsByPeer then). Undefined when refused (answered already).
   */
  async function admit (framed: FramedStream, remote: string): Promise<Served | undefined> {
    let hello: ExchangeMessage | undefined
    try {
      hello = await framed.next(HELLO_TIMEOUT_MS)
    } catch (err) {
      if (stopping) return undefined
      logger.warn(`swarm: closing stream from ${remote}: ${describeError(err)}`)
      await refuse(framed, ErrorCode.PROTOCOL, describeError(err))
      return undefined
    }
    if (hello == null) return undefined
    if (hello.type !== 'hello') {
      logger.warn(`swarm: closing stream from ${remote}: first message is ${hello.type}, not hello`)
      await refuse(framed, ErrorCode.UNAUTHORIZED, 'present a capability first')
      return undefined
    }
    let cap: Capability
    try {
      cap = await verifyCapability(hello.capability, components.coordinatorKey, { peer: remote })
    } catch (err) {
      // a forged or garbled capability is worth a warning; one of another update is routine
      const log = isForeignCapability(err) ? (logger.debug ?? (() => {})) : logger.warn
      log(`swarm: refused peer ${remote}: ${describeError(err)}`)
      await refuse(framed, ErrorCode.UNAUTHORIZED, 'capability refused')
      return undefined
    }
    const entry = served.get(versionKey(cap.image, cap.version))
    if (entry == null) {
      await refuse(framed, ErrorCode.NOT_SERVING, `not serving ${cap.image}@${cap.version}`)
      return undefined
    }
    if (!streamsByPeer.has(remote) && streamsByPeer.size >= maxPeers) {
      logger.info(`swarm: refused peer ${remote}: serving ${maxPeers} peers already`)
      await refuse(framed, ErrorCode.BUSY, 'too many peers')
      return undefined
    }
    streamsByPeer.set(remote, (streamsByPeer.get(remote) ?? 0) + 1)
    return entry
  }

  function countServed (key: string, bytes: number, wire: number): void {
    bytesServed += bytes
    bytesSent += wire
    bytesServedByVersion.set(key, (bytesServedByVersion.get(key) ?? 0) + bytes)
  }

  /**
   * Chunk `index` as it goes on a stream: as BLOCK_ZSTD when the stream speaks it and the chunk
   * compresses (its frame from the cache, or compressed now and kept), else as BLOCK.
   */
  async function outgoing (entry: Served, key: string, index: number, zstd: boolean): Promise<OutgoingChunk> {
    const kept = zstd ? compressed.get(key, index) : undefined
    if (kept?.frame != null) return { message: { type: 'block-zstd', index, bytes: kept.frame }, rawLength: kept.rawLength }
    const bytes = await entry.init.provider.read(index)
    if (zstd && kept == null) {
      const frame = compressChunk(bytes)
      compressed.set(key, index, { rawLength: bytes.length, frame })
      if (frame != null) return { message: { type: 'block-zstd', index, bytes: frame }, rawLength: bytes.length }
    }
    return { message: { type: 'block', index, bytes }, rawLength: bytes.length }
  }

  /**
   * The blocks of chunk `index` that `mask` asks for, as one BLOCK_PART: a zstd frame when they
   * compress (from the cache, or compressed now and kept: peers of a site mostly lack the same
   * blocks), else as they are. PeerProtocolError for a mask past the chunk's blocks.
   */
  async function outgoingPart (entry: Served, key: string, index: number, mask: Uint8Array): Promise<OutgoingChunk> {
    const item = partKey(index, mask)
    const kept = compressed.get(key, item)
    if (kept?.frame != null) return { message: { type: 'block-part', index, compressed: true, bytes: kept.frame }, rawLength: kept.rawLength }
    const chunk = await entry.init.provider.read(index)
    const blocks = chunk.length / BLOCK_SIZE
    if (!maskFits(mask, blocks)) throw new PeerProtocolError(`want of blocks past the ${blocks} of chunk ${index}`)
    const bytes = pickBlocks(chunk, mask)
    if (kept == null) {
      const frame = compressChunk(bytes)
      compressed.set(key, item, { rawLength: bytes.length, frame })
      if (frame != null) return { message: { type: 'block-part', index, compressed: true, bytes: frame }, rawLength: bytes.length }
    }
    return { message: { type: 'block-part', index, compressed: false, bytes }, rawLength: bytes.length }
  }

  /**
   * Answers the upload's queue until it closes, in writes of up to WRITE_BATCH_BYTES: one chunk
   * per write would make every chunk its own muxer frame and leave a small noise message per chunk.
   */
  async function writeBlocks (up: Upload, entry: Served, framed: FramedStream, remote: string, key: string): Promise<void> {
    const zstd = speaksZstd(framed.stream.protocol)
    while (!up.closed) {
      if (up.queue.length === 0) {
        await new Promise<void>(resolve => { up.wake = resolve })
        up.wake = undefined
        continue
      }
      const batch: ExchangeMessage[] = []
      const dontHave: number[] = []
      let bytesInBatch = 0
      let rawInBatch = 0
      while (up.queue.length > 0 && bytesInBatch < WRITE_BATCH_BYTES && !up.closed) {
        const { index, mask } = up.queue.shift() as QueuedWant
        if (!entry.init.provider.has(index)) { dontHave.push(index); continue }
        const { message, rawLength } = mask == null ? await outgoing(entry, key, index, zstd) : await outgoingPart(entry, key, index, mask)
        const wire = message.bytes.length
        const before = performance.now()
        // the caps are on what crosses the LAN
        await limiter.take(wire)
        await components.uploadPacer?.take(wire, { peer: remote })
        batch.push(message)
        bytesInBatch += wire
        rawInBatch += rawLength
        // Under the upload cap, send what is paced at once instead of holding it back.
        if (performance.now() - before > 1) break
      }
      if (up.closed) break
      if (dontHave.length > 0) batch.push({ type: 'dont-have', indices: dontHave })
      await framed.sendBatch(batch)
      if (bytesInBatch > 0) countServed(key, rawInBatch, bytesInBatch)
    }
  }

  /** Reads WANTs, WANT_BLOCKS and CANCELs until the stream ends; anything else closes it with a PROTOCOL error. */
  async function readRequests (up: Upload, entry: Served, framed: FramedStream, remote: string): Promise<void> {
    const closeWith = async (log: string, message: string): Promise<void> => {
      logger.warn(`swarm: closing stream from ${remote}: ${log}`)
      up.closed = true
      await refuse(framed, ErrorCode.PROTOCOL, message)
    }
    while (!up.closed) {
      let m: ExchangeMessage | undefined
      try {
        m = await framed.next()
      } catch (err) {
        if (up.closed || stopping) return
        if (err instanceof MalformedMessageError || err instanceof MessageTooLargeError) await closeWith(describeError(err), describeError(err))
        else { up.closed = true; peerLog(logger, err, 'info')(`swarm: stream from ${remote} ended: ${describeError(err)}`) }
        return
      }
      if (m == null) return
      if (m.type === 'want' || m.type === 'want-blocks') {
        const { chunkCount } = entry.init
        const refusal = m.type === 'want' ? up.queue.want(m.indices, chunkCount) : up.queue.wantBlocks(m.index, m.mask, chunkCount)
        if (refusal != null) { await closeWith(refusal.log, refusal.message); return }
        up.wake?.()
      } else if (m.type === 'cancel') {
        up.queue.cancel(m.indices)
      } else {
        await closeWith(`unexpected ${m.type} message`, `unexpected ${m.type}`)
        return
      }
    }
  }

  /** Serves an admitted peer: its have-map and updates, then the chunks it asks for, until either side ends. */
  async function serveStream (entry: Served, framed: FramedStream, remote: string, key: string): Promise<void> {
    const stream = framed.stream
    const up: Upload = { queue: createUploadQueue(), closed: false }
    const sub: Subscriber = { peerId: remote, framed, pendingUpdates: [], close: () => { up.closed = true; up.wake?.() } }
    entry.subscribers.add(sub)
    try {
      sendHave(entry, sub)
      for (const listener of listenersByKey.get(key) ?? []) listener(remote)
      const writer = writeBlocks(up, entry, framed, remote, key)
      writer.catch(async err => {
        if (!up.closed && !stopping) peerLog(logger, err, 'warn')(`swarm: serving ${remote} failed: ${describeError(err)}`)
        up.closed = true
        // a request the chunk cannot answer (blocks past its end) is the peer's fault: it is told why
        if (err instanceof PeerProtocolError) await refuse(framed, ErrorCode.PROTOCOL, err.message)
        else stream.abort(err as Error)
      })
      await readRequests(up, entry, framed, remote)
      up.closed = true
      up.wake?.()
      await writer.catch(() => {})
      await stream.close({ signal: AbortSignal.timeout(1000) }).catch(() => { stream.abort(new Error('closed')) })
    } finally {
      clearTimeout(sub.flushTimer)
      entry.subscribers.delete(sub)
    }
  }

  async function handle (stream: Stream, connection: Connection): Promise<void> {
    const remote = connection.remotePeer.toString()
    const framed = frameStream(stream)
    open.add(stream)
    let admitted = false
    try {
      const entry = await admit(framed, remote)
      if (entry == null) return
      admitted = true
      await serveStream(entry, framed, remote, versionKey(entry.init.image, entry.init.version))
    } catch (err) {
      if (!stopping) peerLog(logger, err, 'warn')(`swarm: stream from ${remote} failed: ${describeError(err)}`)
      stream.abort(err as Error)
    } finally {
      open.delete(stream)
      if (admitted) {
        const streams = (streamsByPeer.get(remote) ?? 1) - 1
        if (streams <= 0) streamsByPeer.delete(remote); else streamsByPeer.set(remote, streams)
      }
    }
  }

  return {
    handle,
    serve (serveInit) {
      if (!Number.isSafeInteger(serveInit.chunkCount) || serveInit.chunkCount < 1 || serveInit.chunkCount > MAX_SWARM_CHUNKS) {
        throw new RangeError(`cannot serve ${serveInit.chunkCount} chunks (swarm limit ${MAX_SWARM_CHUNKS})`)
      }
      const key = versionKey(serveInit.image, serveInit.version)
      // Serving a version again (e.g. the finished file after the temp file) updates the entry in
      // place, so peers already subscribed keep their stream and read from the new provider.
      let existing = served.get(key)
      if (existing == null) {
        existing = { init: serveInit, active: serveInit.active ?? false, subscribers: new Set(), generation: 0 }
        served.set(key, existing)
      } else {
        existing.init = serveInit
        existing.active = serveInit.active ?? false
        existing.generation++
        for (const sub of existing.subscribers) sendHave(existing, sub)
      }
      const entry = existing
      const generation = entry.generation
      const current = (): boolean => served.get(key) === entry && entry.generation === generation
      return {
        announce (indices) {
          if (!current()) return
          for (const sub of entry.subscribers) {
            sub.pendingUpdates.push(...indices)
            sub.flushTimer ??= setTimeout(() => {
              sub.flushTimer = undefined
              const all = sub.pendingUpdates.splice(0)
              for (let i = 0; i < all.length; i += MAX_INDICES_PER_MESSAGE) {
                sub.framed.send({ type: 'have-update', indices: all.slice(i, i + MAX_INDICES_PER_MESSAGE) }).catch(() => { sub.close() })
              }
            }, HAVE_UPDATE_FLUSH_MS)
          }
        },
        setActive (active) {
          if (!current() || entry.active === active) return
          entry.active = active
          for (const sub of entry.subscribers) sendHave(entry, sub)
        },
        close () {
          if (!current()) return
          served.delete(key)
          compressed.drop(key)
          for (const sub of entry.subscribers) { sub.close(); sub.framed.stream.abort(new Error('no longer served')) }
        }
      }
    },
    onInbound (image, version, listener) {
      const key = versionKey(image, version)
      let set = listenersByKey.get(key)
      if (set == null) { set = new Set(); listenersByKey.set(key, set) }
      set.add(listener)
      return () => { set.delete(listener) }
    },
    setCaps (caps) {
      if (caps.uploadBps != null) limiter = createRateLimiter(caps.uploadBps)
      if (caps.maxPeers != null) maxPeers = caps.maxPeers > 0 ? caps.maxPeers : DEFAULT_MAX_PEERS
    },
    stats: () => ({ bytesServed, bytesSent, byVersion: Object.fromEntries(bytesServedByVersion) }),
    keepCompressed (image, version, index, rawLength, frame, mask) {
      const key = versionKey(image, version)
      // a peer's frame may be padded (zstd skips skippable frames): forward only what we would have sent
      if (served.has(key) && frame.length <= rawLength * LAN_ZSTD_MAX_RATIO) {
        compressed.set(key, mask == null ? index : partKey(index, mask), { rawLength, frame })
      }
    },
    stop () {
      stopping = true
      for (const stream of open) stream.abort(new Error('swarm stopping'))
      open.clear()
    }
  }
}
