/**
 * A hostile LAN peer for tests: a real libp2p node (tcp + noise + yamux +
 * identify, like an agent's) that speaks /trimswarm/blocks/1.0.0 with the
 * protocol/ encoders, announces every chunk of one image version, and then
 * misbehaves in one chosen way. It registers at the coordinator's rendezvous
 * like an agent (an insider with a real machine token), so real agent
 * processes find it, dial it and ask it for chunks.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Libp2p, PrivateKey, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { open } from 'node:fs/promises'
import { encodeMessageBytes, MAX_BLOCK_BYTES, MAX_FRAME_BYTES, MessageType, type ExchangeMessage } from '../../protocol/block-exchange.ts'
import { BLOCK_SIZE, BLOCKS_PROTOCOL } from '../../protocol/constants.ts'
import type { Manifest } from '../../protocol/manifest.ts'
import { openSignedManifest, importPublicKey } from '../../protocol/signed-manifest.ts'
import { pushVarint } from '../../protocol/varint.ts'
import { frameStream } from '../../peer-agent/swarm/framed-stream.ts'

/**
 * How the peer misbehaves once asked for chunks.
 * - corrupt: the right chunk with one byte flipped
 * - wrong-size: the chunk one block short (or one block long when it is a single block)
 * - oversized: a frame header declaring 2 GiB (over MAX_FRAME_BYTES), then bytes without end
 * - endless: a BLOCK of the largest size the protocol allows (MAX_BLOCK_BYTES, not the chunk's), then bytes without end
 * - stall: accepts WANTs and sends nothing
 * - slow-loris: starts the BLOCK (header with the right length) and trickles its bytes
 * - hostage: says it is syncing (HAVE flag active) and holds chunk 0 only, serves chunk 0 correctly and
 *   re-announces it every HOSTAGE_ANNOUNCE_MS: looks alive, so the claim rule leaves its share of chunks to it
 * - silent: answers the HELLO with a HAVE and nothing else (tests that only need a reachable peer)
 */
export type HostileMode = 'corrupt' | 'wrong-size' | 'oversized' | 'endless' | 'stall' | 'slow-loris' | 'hostage' | 'silent'

/** hostage: how often it re-announces the chunk it holds. */
export const HOSTAGE_ANNOUNCE_MS = 500

/** What the hostile peer did (for the test's assertions and counts). */
export interface HostileStats {
  /** Block streams opened to it. */
  streams: number
  /** WANT messages received. */
  wants: number
  /** Faults sent: bad BLOCKs, bad frames, started trickles. */
  faults: number
  /** Bytes pushed in endless/oversized frames before the receiver cut the stream. */
  endlessBytes: number
  /** Streams the receiver reset or closed while we were still misbehaving (an endless frame: before ENDLESS_MAX_BYTES). */
  cut: number
}

/** A running hostile peer. */
export interface HostilePeer {
  readonly peerId: string
  readonly libp2p: Libp2p
  multiaddrs: () => string[]
  stats: HostileStats
  /** POST /v1/peers at `coordinator` with `token` for `site` (and the version). */
  register: (coordinator: string, token: string, site: string) => Promise<void>
  stop: () => Promise<void>
}

/** Options of startHostilePeer. */
export interface HostilePeerInit {
  mode: HostileMode
  /** The version it pretends to hold. */
  manifest: Manifest
  /** The image file (to send real chunk bytes, then damage them). */
  imagePath: string
  /** Its libp2p key (default: a new Ed25519 key); fixes its peer id, e.g. so it wins a claim. */
  privateKey?: PrivateKey
  /** slow-loris: bytes per trickle and the pause between trickles. */
  trickleBytes?: number
  trickleMs?: number
}

/** A libp2p node like an agent's (no block handler). */
export async function startPlainNode (privateKey?: PrivateKey): Promise<Libp2p> {
  return await createLibp2p({
    ...(privateKey != null ? { privateKey } : {}),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  })
}

/** Fetches and verifies the signed manifest of image@version with a bearer token. */
export async function fetchManifest (coordinator: string, token: string, image: string, version: string): Promise<Manifest> {
  const key = await (await fetch(`${coordinator}/v1/key`)).json() as { publicKey: string }
  const res = await fetch(`${coordinator}/v1/images/${image}/versions/${version}`, { headers: { authorization: `Bearer ${token}` } })
  if (!res.ok) throw new Error(`manifest: HTTP ${res.status}`)
  const opened = await openSignedManifest(new Uint8Array(await res.arrayBuffer()), await importPublicKey(Uint8Array.from(Buffer.from(key.publicKey, 'base64'))))
  return opened.manifest
}

/** POST /v1/capabilities with a bearer token: the coordinator's capability bytes, or the HTTP status when refused. */
export async function requestCapability (coordinator: string, token: string, req: { image: string, version: string, peerId: string }): Promise<Uint8Array | number> {
  const res = await fetch(`${coordinator}/v1/capabilities`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(req) })
  if (!res.ok) { await res.body?.cancel(); return res.status }
  return Uint8Array.from(Buffer.from(((await res.json()) as { capability: string }).capability, 'base64'))
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

function isOpen (stream: Stream): boolean {
  return stream.status === 'open' && stream.writeStatus === 'writable'
}

/**
 * Most bytes one endless frame pushes (ENDLESS_PACE_MS per 64 KiB: about 15 s):
 * far past any frame limit, and a bound on this process's memory, since
 * libp2p keeps what the receiver has not taken in a local send buffer.
 */
export const ENDLESS_MAX_BYTES = 96 * 1024 * 1024

/** An endless sender's pace: one 64 KiB piece per this many ms (a fast LAN sender, not a memory copy loop). */
export const ENDLESS_PACE_MS = 10

/** Pushes bytes "forever" (up to ENDLESS_MAX_BYTES) until the stream is cut or `stopped()`; returns bytes written. */
async function pushForever (stream: Stream, stopped: () => boolean): Promise<number> {
  const fill = new Uint8Array(64 * 1024).fill(0x5a)
  let n = 0
  while (!stopped() && isOpen(stream) && n < ENDLESS_MAX_BYTES) {
    try {
      const more = stream.send(fill)
      n += fill.length
      if (more) await sleep(ENDLESS_PACE_MS)
      else await stream.onDrain({ signal: AbortSignal.timeout(30_000) })
    } catch {
      break
    }
  }
  return n
}

/** Starts a hostile peer on 127.0.0.1. */
export async function startHostilePeer (init: HostilePeerInit): Promise<HostilePeer> {
  const { manifest, mode } = init
  const n = manifest.chunks.length
  const node = await startPlainNode(init.privateKey)
  const fh = await open(init.imagePath, 'r')
  const stats: HostileStats = { streams: 0, wants: 0, faults: 0, endlessBytes: 0, cut: 0 }
  let stopping = false

  async function chunk (i: number): Promise<Uint8Array> {
    const c = manifest.chunks[i]
    const buf = new Uint8Array(c.length)
    await fh.read(buf, 0, c.length, c.offset)
    return buf
  }

  /** Sends a frame's head, then filler until the stream is cut (counted in `cut`) or the peer stops. */
  async function sendEndless (stream: Stream, head: number[]): Promise<void> {
    stats.faults++
    stream.send(Uint8Array.from(head))
    const pushed = await pushForever(stream, () => stopping)
    stats.endlessBytes += pushed
    if (!stopping && pushed < ENDLESS_MAX_BYTES) stats.cut++
  }

  async function answer (stream: Stream, send: (m: ExchangeMessage) => Promise<void>, i: number): Promise<void> {
    switch (mode) {
      case 'corrupt': {
        const bytes = await chunk(i)
        bytes[bytes.length >> 1] ^= 0x01
        stats.faults++
        await send({ type: 'block', index: i, bytes })
        return
      }
      case 'wrong-size': {
        const bytes = await chunk(i)
        const wrong = bytes.length > BLOCK_SIZE ? bytes.subarray(0, bytes.length - BLOCK_SIZE) : Uint8Array.from([...bytes, ...new Uint8Array(BLOCK_SIZE)])
        stats.faults++
        await send({ type: 'block', index: i, bytes: wrong })
        return
      }
      case 'oversized': {
        // far over the limit, so a decoder that waited for the whole frame instead of refusing it at once would wait forever
        const head: number[] = []
        pushVarint(head, Math.max(MAX_FRAME_BYTES + 1, 2 ** 31))
        head.push(MessageType.BLOCK)
        await sendEndless(stream, head)
        return
      }
      case 'endless': {
        // a frame as long as a BLOCK may be, for a chunk far smaller: valid framing, wrong content
        const inner: number[] = [MessageType.BLOCK]
        pushVarint(inner, i)
        const head: number[] = []
        pushVarint(head, inner.length + MAX_BLOCK_BYTES)
        head.push(...inner)
        await sendEndless(stream, head)
        return
      }
      case 'slow-loris': {
        const bytes = await chunk(i)
        const head: number[] = []
        const inner: number[] = [MessageType.BLOCK]
        pushVarint(inner, i)
        pushVarint(head, inner.length + bytes.length)
        stats.faults++
        stream.send(Uint8Array.from([...head, ...inner]))
        const step = init.trickleBytes ?? 16
        for (let at = 0; at < bytes.length && !stopping && isOpen(stream); at += step) {
          await sleep(init.trickleMs ?? 250)
          try { stream.send(bytes.subarray(at, at + step)) } catch { break }
        }
        if (!stopping) stats.cut++
        return
      }
      case 'hostage':
        // what it holds, it serves correctly
        if (i === 0) stream.send(encodeMessageBytes({ type: 'block', index: i, bytes: await chunk(i) }))
        return
      case 'stall':
        stats.faults++ // a request it will never answer
        return
      default: // silent: say nothing
    }
  }

  await node.handle(BLOCKS_PROTOCOL, (stream) => {
    stats.streams++
    const framed = frameStream(stream)
    void (async () => {
      try {
        const hello = await framed.next(10_000)
        if (hello?.type !== 'hello') { stream.abort(new Error('no hello')); return }
        // it trusts anyone and claims to hold every chunk (hostage: chunk 0, and to be syncing)
        const bitmap = new Uint8Array(Math.ceil(n / 8)).fill(mode === 'hostage' ? 0 : 0xff)
        if (mode === 'hostage') bitmap[0] = 1
        else if (n % 8 !== 0) bitmap[bitmap.length - 1] = (1 << (n % 8)) - 1
        await framed.send({ type: 'have', active: mode === 'hostage', count: n, bitmap })
        if (mode === 'hostage') {
          const timer = setInterval(() => {
            if (!isOpen(stream)) { clearInterval(timer); return }
            stats.faults++
            framed.send({ type: 'have-update', indices: [0] }).catch(() => { clearInterval(timer) })
          }, HOSTAGE_ANNOUNCE_MS)
        }
        let busy = false
        for (let m = await framed.next(); m != null; m = await framed.next()) {
          if (m.type !== 'want') continue
          stats.wants++
          // the byte-level attacks take over the stream with the first request
          if (busy) continue
          if (mode === 'oversized' || mode === 'endless' || mode === 'slow-loris') {
            busy = true
            void answer(stream, async (msg) => { await framed.send(msg) }, m.indices[0])
            continue
          }
          for (const i of m.indices) await answer(stream, async (msg) => { stream.send(encodeMessageBytes(msg)) }, i)
        }
      } catch {
        // the honest side cut us off: expected
      }
    })()
  }, { runOnLimitedConnection: false })

  return {
    get peerId () { return node.peerId.toString() },
    libp2p: node,
    multiaddrs: () => node.getMultiaddrs().map(m => m.toString()),
    stats,
    async register (coordinator, token, site) {
      const res = await fetch(`${coordinator}/v1/peers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(m => m.toString()), site, image: manifest.name, version: manifest.version })
      })
      if (!res.ok) throw new Error(`register: HTTP ${res.status} ${await res.text()}`)
    },
    async stop () {
      stopping = true
      await node.stop()
      await fh.close()
    }
  }
}

/**
 * Opens a block stream from `node` to `target` (a multiaddr with /p2p/), sends
 * `send` (messages or raw bytes), and returns every byte the server sent until
 * it closed the stream (or `timeoutMs` passed).
 */
export async function probe (node: Libp2p, target: string, send: Array<ExchangeMessage | Uint8Array>, timeoutMs = 5000): Promise<Uint8Array> {
  const stream = await node.dialProtocol(multiaddr(target), BLOCKS_PROTOCOL, { signal: AbortSignal.timeout(timeoutMs) })
  for (const m of send) stream.send(m instanceof Uint8Array ? m : encodeMessageBytes(m))
  const parts: Uint8Array[] = []
  const timer = setTimeout(() => { stream.abort(new Error('probe timeout')) }, timeoutMs)
  try {
    for await (const chunk of stream) parts.push(chunk instanceof Uint8Array ? chunk.slice() : (chunk as { subarray: () => Uint8Array }).subarray())
  } catch {}
  clearTimeout(timer)
  stream.abort(new Error('done'))
  return Buffer.concat(parts)
}
