/**
 * The serving side of BLOCKS_PROTOCOL: a peer must present, in its first
 * message, a capability signed by the coordinator for the image version and
 * bound to the peer id of its connection; only then does it get the have-map,
 * updates and chunks. Without one it learns nothing but an ERROR.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { bitmapSet, ErrorCode, MAX_INDICES_PER_MESSAGE, MAX_SWARM_CHUNKS, MessageTooLargeError, MalformedMessageError, type ExchangeMessage } from '../../protocol/block-exchange.ts'
import { CapabilityMismatchError, ExpiredCapabilityError, verifyCapability, type Capability } from '../../protocol/capability.ts'
import type { UploadPacer } from '../background-pacer.ts'
import { createRateLimiter, type RateLimiter } from '../rate-limiter.ts'
import { DEFAULT_MAX_PEERS, HAVE_UPDATE_FLUSH_MS, HELLO_TIMEOUT_MS, MAX_QUEUED_WANTS, WRITE_BATCH_BYTES } from './constants.ts'
import { frameStream, type FramedStream } from './framed-stream.ts'
import type { ServedVersion, ServeInit, SwarmLogger, SwarmServeStats } from './interface.ts'

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

/** The serving half of a swarm node. */
export interface BlockServer {
  handle: (stream: Stream, connection: Connection) => Promise<void>
  serve: (init: ServeInit) => ServedVersion
  /** Registers a listener for inbound peers of image@version (returns an unsubscribe function). */
  onInbound: (image: string, version: string, listener: InboundListener) => () => void
  setCaps: (caps: { uploadBps?: number, maxPeers?: number }) => void
  /** Chunk bytes sent to peers since start: in total and per image@version key. */
  stats: () => SwarmServeStats
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

const key = (image: string, version: string): string => `${image}@${version}`

/** A block server; caps from policy (uploadBps 0 = none; maxPeers 0 = DEFAULT_MAX_PEERS). */
export function createBlockServer (components: BlockServerComponents, init: { uploadBps?: number, maxPeers?: number }): BlockServer {
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
  const bytesServedByVersion = new Map<string, number>()

  function bitmapOf (s: Served): Uint8Array {
    const n = s.init.chunkCount
    const bitmap = new Uint8Array(Math.ceil(n / 8))
    for (let i = 0; i < n; i++) if (s.init.provider.has(i)) bitmapSet(bitmap, i)
    return bitmap
  }

  function sendHave (s: Served, sub: Subscriber): void {
    sub.framed.send({ type: 'have', active: s.active, count: s.init.chunkCount, bitmap: bitmapOf(s) }).catch(() => { sub.close() })
  }

  async function refuse (framed: FramedStream, code: number, message: string): Promise<void> {
    try {
      await framed.send({ type: 'error', code, message })
      await framed.stream.close({ signal: AbortSignal.timeout(1000) })
    } catch {
      framed.stream.abort(new Error(message))
    }
  }

  async function handle (stream: Stream, connection: Connection): Promise<void> {
    const remote = connection.remotePeer.toString()
    const framed = frameStream(stream)
    open.add(stream)
    let counted = false
    let sub: Subscriber | undefined
    let entry: Served | undefined
    try {
      let hello: ExchangeMessage | undefined
      try {
        hello = await framed.next(HELLO_TIMEOUT_MS)
      } catch (err) {
        if (stopping) return
        logger.warn(`swarm: closing stream from ${remote}: ${describe(err)}`)
        await refuse(framed, ErrorCode.PROTOCOL, describe(err))
        return
      }
      if (hello == null) return
      if (hello.type !== 'hello') {
        logger.warn(`swarm: closing stream from ${remote}: first message is ${hello.type}, not hello`)
        await refuse(framed, ErrorCode.UNAUTHORIZED, 'present a capability first')
        return
      }
      let cap: Capability
      try {
        cap = await verifyCapability(hello.capability, components.coordinatorKey, { peer: remote })
      } catch (err) {
        // a forged or garbled capability is worth a warning; one of another update is routine
        const log = isForeignCapability(err) ? (logger.debug ?? (() => {})) : logger.warn
        log(`swarm: refused peer ${remote}: ${describe(err)}`)
        await refuse(framed, ErrorCode.UNAUTHORIZED, 'capability refused')
        return
      }
      entry = served.get(key(cap.image, cap.version))
      if (entry == null) {
        await refuse(framed, ErrorCode.NOT_SERVING, `not serving ${cap.image}@${cap.version}`)
        return
      }
      if (!streamsByPeer.has(remote) && streamsByPeer.size >= maxPeers) {
        logger.info(`swarm: refused peer ${remote}: serving ${maxPeers} peers already`)
        await refuse(framed, ErrorCode.BUSY, 'too many peers')
        return
      }
      streamsByPeer.set(remote, (streamsByPeer.get(remote) ?? 0) + 1)
      counted = true
      const s = entry
      const queue: number[] = []
      let wake: (() => void) | undefined
      let closed = false
      sub = {
        peerId: remote,
        framed,
        pendingUpdates: [],
        close: () => { closed = true; wake?.() }
      }
      s.subscribers.add(sub)
      sendHave(s, sub)
      const versionKey = key(cap.image, cap.version)
      for (const l of listenersByKey.get(versionKey) ?? []) l(remote)

      const writer = (async () => {
        while (!closed) {
          if (queue.length === 0) {
            await new Promise<void>(resolve => { wake = resolve })
            wake = undefined
            continue
          }
          // Answer what is queued in one write of up to WRITE_BATCH_BYTES: one chunk per write
          // would make every chunk its own muxer frame and leave a small noise message per chunk.
          const batch: ExchangeMessage[] = []
          const dontHave: number[] = []
          let bytesInBatch = 0
          while (queue.length > 0 && bytesInBatch < WRITE_BATCH_BYTES && !closed) {
            const index = queue.shift() as number
            if (!s.init.provider.has(index)) { dontHave.push(index); continue }
            const bytes = await s.init.provider.read(index)
            const before = performance.now()
            await limiter.take(bytes.length)
            await components.uploadPacer?.take(bytes.length, { peer: remote })
            batch.push({ type: 'block', index, bytes })
            bytesInBatch += bytes.length
            // Under the upload cap, send what is paced at once instead of holding it back.
            if (performance.now() - before > 1) break
          }
          if (closed) break
          if (dontHave.length > 0) batch.push({ type: 'dont-have', indices: dontHave })
          await framed.sendBatch(batch)
          if (bytesInBatch > 0) {
            bytesServed += bytesInBatch
            bytesServedByVersion.set(versionKey, (bytesServedByVersion.get(versionKey) ?? 0) + bytesInBatch)
          }
        }
      })()
      writer.catch(err => {
        if (!closed && !stopping) peerLog(logger, err, 'warn')(`swarm: serving ${remote} failed: ${describe(err)}`)
        closed = true
        stream.abort(err as Error)
      })

      while (!closed) {
        let m: ExchangeMessage | undefined
        try {
          m = await framed.next()
        } catch (err) {
          if (closed || stopping) break
          closed = true
          if (err instanceof MalformedMessageError || err instanceof MessageTooLargeError) {
            logger.warn(`swarm: closing stream from ${remote}: ${describe(err)}`)
            await refuse(framed, ErrorCode.PROTOCOL, describe(err))
          } else {
            peerLog(logger, err, 'info')(`swarm: stream from ${remote} ended: ${describe(err)}`)
          }
          break
        }
        if (m == null) break
        if (m.type === 'want') {
          if (queue.length + m.indices.length > MAX_QUEUED_WANTS) {
            logger.warn(`swarm: closing stream from ${remote}: over ${MAX_QUEUED_WANTS} queued wants`)
            closed = true
            await refuse(framed, ErrorCode.PROTOCOL, 'too many wants')
            break
          }
          for (const i of m.indices) {
            if (i >= s.init.chunkCount) {
              closed = true
              logger.warn(`swarm: closing stream from ${remote}: want of chunk ${i} past the end (${s.init.chunkCount})`)
              await refuse(framed, ErrorCode.PROTOCOL, 'chunk index out of range')
              break
            }
            queue.push(i)
          }
          wake?.()
        } else if (m.type === 'cancel') {
          const drop = new Set(m.indices)
          for (let k = queue.length - 1; k >= 0; k--) if (drop.has(queue[k])) queue.splice(k, 1)
        } else {
          logger.warn(`swarm: closing stream from ${remote}: unexpected ${m.type} message`)
          closed = true
          await refuse(framed, ErrorCode.PROTOCOL, `unexpected ${m.type}`)
          break
        }
      }
      closed = true
      wake?.()
      await writer.catch(() => {})
      await stream.close({ signal: AbortSignal.timeout(1000) }).catch(() => { stream.abort(new Error('closed')) })
    } catch (err) {
      if (!stopping) peerLog(logger, err, 'warn')(`swarm: stream from ${remote} failed: ${describe(err)}`)
      stream.abort(err as Error)
    } finally {
      open.delete(stream)
      if (sub != null) { clearTimeout(sub.flushTimer); entry?.subscribers.delete(sub) }
      if (counted) {
        const n = (streamsByPeer.get(remote) ?? 1) - 1
        if (n <= 0) streamsByPeer.delete(remote); else streamsByPeer.set(remote, n)
      }
    }
  }

  return {
    handle,
    serve (serveInit) {
      if (!Number.isSafeInteger(serveInit.chunkCount) || serveInit.chunkCount < 1 || serveInit.chunkCount > MAX_SWARM_CHUNKS) {
        throw new RangeError(`cannot serve ${serveInit.chunkCount} chunks (swarm limit ${MAX_SWARM_CHUNKS})`)
      }
      const k = key(serveInit.image, serveInit.version)
      // Serving a version again (e.g. the finished file after the temp file) updates the entry in
      // place, so peers already subscribed keep their stream and read from the new provider.
      let s = served.get(k)
      if (s == null) {
        s = { init: serveInit, active: serveInit.active ?? false, subscribers: new Set(), generation: 0 }
        served.set(k, s)
      } else {
        s.init = serveInit
        s.active = serveInit.active ?? false
        s.generation++
        for (const sub of s.subscribers) sendHave(s, sub)
      }
      const entry = s
      const generation = s.generation
      const current = (): boolean => served.get(k) === entry && entry.generation === generation
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
          served.delete(k)
          for (const sub of entry.subscribers) { sub.close(); sub.framed.stream.abort(new Error('no longer served')) }
        }
      }
    },
    onInbound (image, version, listener) {
      const k = key(image, version)
      let set = listenersByKey.get(k)
      if (set == null) { set = new Set(); listenersByKey.set(k, set) }
      set.add(listener)
      return () => { set.delete(listener) }
    },
    setCaps (caps) {
      if (caps.uploadBps != null) limiter = createRateLimiter(caps.uploadBps)
      if (caps.maxPeers != null) maxPeers = caps.maxPeers > 0 ? caps.maxPeers : DEFAULT_MAX_PEERS
    },
    stats: () => ({ bytesServed, byVersion: Object.fromEntries(bytesServedByVersion) }),
    stop () {
      stopping = true
      for (const s of open) s.abort(new Error('swarm stopping'))
      open.clear()
    }
  }
}

/** One line for a log: the error class and message. */
/** Error names of a peer that went away mid-stream (it stopped, its sync ended). */
const GONE_NAMES = new Set(['StreamResetError', 'StreamStateError', 'StreamClosedError', 'ConnectionClosedError', 'ConnectionClosingError', 'AbortError'])

/** Network codes of a peer that is not there any more (it left after its sync). */
const GONE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH'])

/**
 * Whether an error only says a peer went away (a reset stream, a dial refused): routine on a LAN
 * where agents stop after their sync, so it is logged at debug level and counted, not warned about.
 */
export function isPeerGone (err: unknown, depth = 0): boolean {
  if (err == null || typeof err !== 'object' || depth > 5) return false
  const e = err as { name?: string, code?: string, errors?: unknown[], cause?: unknown, message?: string }
  if (GONE_NAMES.has(e.name ?? '') || GONE_CODES.has(e.code ?? '')) return true
  if (Array.isArray(e.errors) && e.errors.length > 0) return e.errors.every(x => isPeerGone(x, depth + 1))
  if (e.cause != null) return isPeerGone(e.cause, depth + 1)
  return /\bECONNREFUSED\b/.test(e.message ?? '')
}

/**
 * A capability of a peer that is not ours to serve but not forged either: signed by our
 * coordinator for another image or version, or expired (a peer of another update, a late one).
 */
export function isForeignCapability (err: unknown): boolean {
  return err instanceof CapabilityMismatchError || err instanceof ExpiredCapabilityError
}

/** The logger call for a peer failure: debug when the peer only went away, else `fallback`. */
export function peerLog (logger: SwarmLogger, err: unknown, fallback: 'info' | 'warn'): (msg: string) => void {
  return isPeerGone(err) ? (logger.debug ?? (() => {})) : logger[fallback]
}

export function describe (err: unknown): string {
  if (err instanceof MessageTooLargeError || err instanceof MalformedMessageError) return `${err.name}: ${err.message}`
  if (err instanceof Error) return `${err.name}: ${err.message}`
  return String(err)
}
