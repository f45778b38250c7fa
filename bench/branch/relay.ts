/**
 * A small TCP relay for the WAN path: adds a fixed one-way delay to every byte
 * in each direction (user-space RTT, because netem is absent on this kernel:
 * FACTS.md), and optionally shapes both directions with a shared token bucket
 * and counts bytes (the 127.0.0.1 fallback when namespaces cannot be made).
 *
 * Run as its own process in the hq namespace:
 *   node bench/branch/relay.ts --delay-ms D --map LISTEN_HOST:PORT=TARGET_HOST:PORT ...
 * It prints "ready" once every listener is up.
 */
import { once } from 'node:events'
import { createServer, connect } from 'node:net'
import type { Server, Socket } from 'node:net'
import { parseArgs } from 'node:util'

/** One listening address forwarded to one target. */
export interface RelayMapping {
  listenHost: string
  listenPort: number
  targetHost: string
  targetPort: number
}

/** Options of a relay. */
export interface RelayInit {
  mappings: RelayMapping[]
  /** Delay added in each direction, ms (half the round trip). */
  oneWayDelayMs: number
  /** Bytes per second per direction, shared by all connections; 0 = not shaped. */
  rate?: number
}

/** A running relay. */
export interface Relay {
  /** Ports actually bound, in mapping order (port 0 picks one). */
  ports: number[]
  /** Payload bytes relayed so far: down = target -> client, up = client -> target. */
  counters: () => { down: number, up: number }
  stop: () => Promise<void>
}

/** Token bucket shared by many writers; take(n) resolves when n bytes may pass. */
export interface TokenBucket {
  take: (n: number) => Promise<void>
}

/** Creates a token bucket of `rate` bytes per second with `burst` bytes of depth. */
export function createTokenBucket (rate: number, burst: number, now: () => number = () => performance.now()): TokenBucket {
  let tokens = burst
  let last = now()
  let chain: Promise<void> = Promise.resolve()
  const refill = (): void => {
    const t = now()
    tokens = Math.min(burst, tokens + (t - last) / 1000 * rate)
    last = t
  }
  return {
    async take (n) {
      // Serialised so that concurrent connections share the rate instead of each getting it.
      const mine = chain.then(async () => {
        refill()
        tokens -= n
        if (tokens < 0) await sleep(-tokens / rate * 1000)
      })
      chain = mine
      await mine
    }
  }
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/** Bytes queued in one direction before the relay stops reading (keeps memory bounded). */
const QUEUE_HIGH = 8 * 1024 * 1024
/** Largest piece sent to the token bucket at once, so shaped traffic is smooth. */
const SHAPE_PIECE = 16 * 1024

function pump (src: Socket, dst: Socket, delayMs: number, bucket: TokenBucket | undefined, count: (n: number) => void): void {
  const queue: Array<{ buf: Buffer, due: number }> = []
  let queued = 0
  let ended = false
  let wake: (() => void) | undefined
  src.on('data', (buf: Buffer) => {
    queue.push({ buf, due: performance.now() + delayMs })
    queued += buf.length
    if (queued > QUEUE_HIGH) src.pause()
    wake?.()
  })
  src.on('end', () => { ended = true; wake?.() })
  const loop = async (): Promise<void> => {
    while (!dst.destroyed) {
      const item = queue[0]
      if (item == null) {
        if (ended) { dst.end(); return }
        await new Promise<void>(resolve => { wake = resolve })
        wake = undefined
        continue
      }
      const wait = item.due - performance.now()
      if (wait > 0.5) await sleep(wait)
      queue.shift()
      queued -= item.buf.length
      if (queued <= QUEUE_HIGH / 2 && src.isPaused()) src.resume()
      for (let o = 0; o < item.buf.length; o += bucket == null ? item.buf.length : SHAPE_PIECE) {
        const piece = bucket == null ? item.buf : item.buf.subarray(o, o + SHAPE_PIECE)
        if (bucket != null) await bucket.take(piece.length)
        count(piece.length)
        if (!dst.write(piece) && !dst.destroyed) {
          await Promise.race([once(dst, 'drain'), once(dst, 'close')])
        }
      }
    }
  }
  void loop().catch(() => { src.destroy(); dst.destroy() })
}

/** Starts a relay; resolves when every listener is bound. */
export async function startRelay (init: RelayInit): Promise<Relay> {
  let down = 0
  let up = 0
  const rate = init.rate ?? 0
  const burst = Math.max(64 * 1024, rate / 50)
  const downBucket = rate > 0 ? createTokenBucket(rate, burst) : undefined
  const upBucket = rate > 0 ? createTokenBucket(rate, burst) : undefined
  const sockets = new Set<Socket>()
  const servers: Server[] = []
  const ports: number[] = []
  for (const m of init.mappings) {
    // allowHalfOpen: a FIN from one side must not cut the delayed bytes still queued for it.
    const server = createServer({ noDelay: true, allowHalfOpen: true }, client => {
      const target = connect({ host: m.targetHost, port: m.targetPort, noDelay: true, allowHalfOpen: true })
      sockets.add(client)
      sockets.add(target)
      const close = (): void => { client.destroy(); target.destroy(); sockets.delete(client); sockets.delete(target) }
      client.on('error', close)
      target.on('error', close)
      // Fully closed only when both directions have ended (pump ends each side after its queue drains).
      client.on('close', () => { if (target.writableFinished || target.destroyed) close() })
      target.on('close', () => { if (client.writableFinished || client.destroyed) close() })
      pump(client, target, init.oneWayDelayMs, upBucket, n => { up += n })
      pump(target, client, init.oneWayDelayMs, downBucket, n => { down += n })
    })
    server.listen(m.listenPort, m.listenHost)
    await once(server, 'listening')
    const addr = server.address()
    ports.push(typeof addr === 'object' && addr != null ? addr.port : m.listenPort)
    servers.push(server)
  }
  return {
    ports,
    counters: () => ({ down, up }),
    async stop () {
      for (const s of sockets) s.destroy()
      await Promise.all(servers.map(async s => await new Promise(resolve => s.close(resolve))))
    }
  }
}

/** Parses "HOST:PORT=HOST:PORT". */
export function parseMapping (text: string): RelayMapping {
  const m = /^([^=]+):(\d+)=([^=]+):(\d+)$/.exec(text)
  if (m == null) throw new Error(`bad --map ${JSON.stringify(text)}: want LISTEN_HOST:PORT=TARGET_HOST:PORT`)
  return { listenHost: m[1], listenPort: Number(m[2]), targetHost: m[3], targetPort: Number(m[4]) }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { 'delay-ms': { type: 'string' }, map: { type: 'string', multiple: true }, rate: { type: 'string' } } })
  const relay = await startRelay({
    mappings: (values.map ?? []).map(parseMapping),
    oneWayDelayMs: Number(values['delay-ms'] ?? 0),
    rate: Number(values.rate ?? 0)
  })
  process.stdout.write(`ready ${relay.ports.join(',')}\n`)
  const stop = (): void => { void relay.stop().then(() => process.exit(0)) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}
