/**
 * The byte meter: a TCP proxy in front of the coordinator that counts every
 * byte crossing it in both directions, as an admin's own meter between agent
 * and coordinator would. With `rate` (bytes/s, shared by every connection, like
 * one WAN link) it also paces coordinator -> agent, and stops reading from the
 * coordinator while the agent does not keep up, so what it counts is what
 * reached the agent (a link queues little), not what waits in socket buffers.
 */
import { connect, createServer, type AddressInfo } from 'node:net'

/** A running byte meter. */
export interface ByteMeter {
  /** URL to give agents instead of the coordinator's. */
  url: string
  /** Bytes agent -> coordinator. */
  readonly up: number
  /** Bytes coordinator -> agent. */
  readonly down: number
  /** Both directions. */
  readonly bytes: number
  /** Zeroes the counters. */
  reset: () => void
  close: () => Promise<void>
}

/** Starts a byte meter proxying to `target` (http://host:port). */
export async function startByteMeter (target: string | URL, options: { rate?: number } = {}): Promise<ByteMeter> {
  const t = new URL(target)
  const rate = options.rate ?? 0
  const state = { up: 0, down: 0 }
  // when the link is next free: each piece occupies it for bytes/rate, with no credit for idle time
  let linkFreeAt = 0
  const sockets = new Set<import('node:net').Socket>()
  const server = createServer((client) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    const upstream = connect(Number(t.port), t.hostname)
    client.on('data', (d: Buffer) => { state.up += d.length })
    client.pipe(upstream)
    upstream.on('data', (d: Buffer) => {
      state.down += d.length
      let waits = client.write(d) ? 0 : 1
      const go = (): void => { if (--waits <= 0) upstream.resume() }
      if (waits > 0) client.once('drain', go)
      if (rate > 0) {
        const now = performance.now()
        linkFreeAt = Math.max(now, linkFreeAt) + d.length / rate * 1000
        const ahead = linkFreeAt - now
        if (ahead > 1) { waits++; setTimeout(go, ahead) }
      }
      if (waits > 0) upstream.pause()
    })
    upstream.on('end', () => client.end())
    const end = (): void => { client.destroy(); upstream.destroy() }
    client.on('error', end)
    upstream.on('error', end)
    client.on('close', end)
    upstream.on('close', end)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    get up () { return state.up },
    get down () { return state.down },
    get bytes () { return state.up + state.down },
    reset () { state.up = 0; state.down = 0 },
    close: async () => {
      await new Promise<void>(resolve => {
        server.close(() => { resolve() })
        for (const s of sockets) s.destroy()
      })
    }
  }
}
