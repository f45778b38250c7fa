/**
 * MANIFEST_PROTOCOL (protocol/manifest-exchange.ts) on a swarm node: answers
 * peers that present a capability for image@version with the signed manifest
 * this node holds (or FETCHING while it downloads it from the origin), and asks
 * peers for one. A peer without a valid capability learns nothing but
 * REFUSED; what a peer sends is returned unverified: the caller opens the
 * envelope with the pinned coordinator key.
 */
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { Uint8ArrayList } from 'uint8arraylist'
import { verifyCapability } from '../../protocol/capability.ts'
import { MANIFEST_PROTOCOL } from '../../protocol/constants.ts'
import {
  decodeManifestAnswer, decodeManifestRequest, encodeManifestAnswer, encodeManifestRequest, MAX_MANIFEST_ANSWER_BYTES,
  MAX_MANIFEST_REQUEST_BYTES, readFrameLength, type ManifestAnswer
} from '../../protocol/manifest-exchange.ts'
import { describeError } from './peer-log.ts'
import { CONNECT_TIMEOUT_MS, HELLO_TIMEOUT_MS, MANIFEST_ANSWER_TIMEOUT_MS, MANIFEST_HELD_VERSIONS } from './constants.ts'
import type { AbortOptions, SwarmLogger } from './interface.ts'

/** The manifest half of a swarm node. */
export interface ManifestExchange {
  /** Answers one inbound MANIFEST_PROTOCOL stream. */
  handle: (stream: Stream, connection: Connection) => Promise<void>
  /** Serves this signed envelope of image@version (the last MANIFEST_HELD_VERSIONS are kept). */
  hold: (image: string, version: string, envelope: Uint8Array) => void
  /** Tells peers that ask for image@version that this node is downloading it; returns the function that ends that. */
  fetching: (image: string, version: string) => () => void
  /** Asks a peer (multiaddr with /p2p/, or a peer id already connected) for the manifest the capability names. */
  ask: (peer: string, capability: Uint8Array, options?: AbortOptions) => Promise<ManifestAnswer>
}

/** What the exchange uses. */
export interface ManifestExchangeComponents {
  libp2p: Libp2p
  coordinatorKey: CryptoKey
  logger: SwarmLogger
}

const key = (image: string, version: string): string => `${image}@${version}`

/**
 * Reads exactly one length-prefixed frame body of at most `max` bytes; the
 * limit is checked as soon as the length prefix is in, before buffering.
 */
async function readOneFrame (stream: Stream, max: number, timeoutMs: number): Promise<Uint8Array> {
  const buf = new Uint8ArrayList()
  let frame: { length: number, start: number } | undefined
  const timer = setTimeout(() => { stream.abort(new DOMException(`no answer within ${timeoutMs} ms`, 'TimeoutError')) }, timeoutMs)
  try {
    for await (const chunk of stream) {
      buf.append(chunk)
      frame ??= readFrameLength(buf.subarray(0, Math.min(buf.byteLength, 9)), max)
      if (frame != null && buf.byteLength >= frame.start + frame.length) {
        if (buf.byteLength > frame.start + frame.length) throw new Error('bytes after the frame')
        return buf.subarray(frame.start)
      }
    }
  } finally {
    clearTimeout(timer)
  }
  throw new Error('stream ended before a whole frame')
}

/** Creates the exchange; register `handle` for MANIFEST_PROTOCOL. */
export function createManifestExchange (components: ManifestExchangeComponents): ManifestExchange {
  const { libp2p, logger } = components
  /** Held envelopes, oldest first (Map keeps insertion order). */
  const held = new Map<string, Uint8Array>()
  const inFlight = new Map<string, number>()

  async function answer (stream: Stream, a: ManifestAnswer): Promise<void> {
    if (!stream.send(encodeManifestAnswer(a))) await stream.onDrain({ signal: AbortSignal.timeout(MANIFEST_ANSWER_TIMEOUT_MS) })
    await stream.close({ signal: AbortSignal.timeout(MANIFEST_ANSWER_TIMEOUT_MS) })
  }

  return {
    async handle (stream, connection) {
      const remote = connection.remotePeer.toString()
      try {
        let capability: Uint8Array
        try {
          capability = decodeManifestRequest(await readOneFrame(stream, MAX_MANIFEST_REQUEST_BYTES, HELLO_TIMEOUT_MS))
        } catch (err) {
          logger.warn(`swarm: closing manifest stream from ${remote}: ${describeError(err)}`)
          await answer(stream, { status: 'refused', reason: describeError(err) })
          return
        }
        let cap
        try {
          cap = await verifyCapability(capability, components.coordinatorKey, { peer: remote })
        } catch (err) {
          logger.warn(`swarm: refused manifest request from ${remote}: ${describeError(err)}`)
          await answer(stream, { status: 'refused', reason: 'capability refused' })
          return
        }
        const k = key(cap.image, cap.version)
        const envelope = held.get(k)
        await answer(stream, envelope != null ? { status: 'manifest', envelope } : (inFlight.get(k) ?? 0) > 0 ? { status: 'fetching' } : { status: 'not-held' })
      } catch (err) {
        stream.abort(err as Error)
      }
    },
    hold (image, version, envelope) {
      const k = key(image, version)
      held.delete(k)
      held.set(k, envelope)
      while (held.size > MANIFEST_HELD_VERSIONS) held.delete(held.keys().next().value as string)
    },
    fetching (image, version) {
      const k = key(image, version)
      inFlight.set(k, (inFlight.get(k) ?? 0) + 1)
      let ended = false
      return () => {
        if (ended) return
        ended = true
        const n = (inFlight.get(k) ?? 1) - 1
        if (n > 0) inFlight.set(k, n)
        else inFlight.delete(k)
      }
    },
    async ask (peer, capability, options = {}) {
      const answerTimeout = AbortSignal.timeout(CONNECT_TIMEOUT_MS + MANIFEST_ANSWER_TIMEOUT_MS)
      const signal = options.signal != null ? AbortSignal.any([options.signal, answerTimeout]) : answerTimeout
      const target = peer.startsWith('/') ? multiaddr(peer) : peerIdFromString(peer)
      const stream = await libp2p.dialProtocol(target, MANIFEST_PROTOCOL, { signal })
      try {
        if (!stream.send(encodeManifestRequest(capability))) await stream.onDrain({ signal })
        await stream.close({ signal })
        return decodeManifestAnswer(await readOneFrame(stream, MAX_MANIFEST_ANSWER_BYTES, MANIFEST_ANSWER_TIMEOUT_MS))
      } catch (err) {
        stream.abort(err as Error)
        throw err
      }
    }
  }
}
