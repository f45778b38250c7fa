import { once } from 'node:events'
import { connect, createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { createTokenBucket, parseMapping, startRelay } from '../../bench/branch/relay.ts'
import type { Relay } from '../../bench/branch/relay.ts'
import { filePathFor } from '../../bench/branch/serve.ts'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0)) await c() })

/** A real TCP server on 127.0.0.1 that answers each connection with `handler`. */
async function server (handler: (s: Socket) => void): Promise<number> {
  const srv: Server = createServer({ allowHalfOpen: true }, handler)
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  cleanups.push(async () => { srv.close() })
  const a = srv.address()
  return typeof a === 'object' && a != null ? a.port : 0
}

async function relayTo (port: number, oneWayDelayMs: number, rate = 0): Promise<Relay> {
  const relay = await startRelay({ mappings: [{ listenHost: '127.0.0.1', listenPort: 0, targetHost: '127.0.0.1', targetPort: port }], oneWayDelayMs, rate })
  cleanups.push(async () => { await relay.stop() })
  return relay
}

/** Sends `payload`, half-closes, collects everything the other side sends until it closes. */
async function exchange (port: number, payload: Buffer): Promise<Buffer> {
  const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  await once(s, 'connect')
  const parts: Buffer[] = []
  s.on('data', (b: Buffer) => parts.push(b))
  s.end(payload)
  await once(s, 'end')
  s.destroy()
  return Buffer.concat(parts)
}

describe('WAN relay', () => {
  it('adds the round trip to a request/response and delivers every byte after a half-close', async () => {
    const echo = await server(s => { s.pipe(s) })
    const relay = await relayTo(echo, 60)
    const payload = Buffer.alloc(300_000, 7)
    const t0 = performance.now()
    const back = await exchange(relay.ports[0], payload)
    const ms = performance.now() - t0
    expect(back.equals(payload)).toBe(true)
    expect(ms).toBeGreaterThanOrEqual(115) // 60 ms each way, timer granularity aside
    expect(relay.counters()).toEqual({ up: payload.length, down: payload.length })
  })

  it('without delay or rate it is a plain relay', async () => {
    const echo = await server(s => { s.pipe(s) })
    const relay = await relayTo(echo, 0)
    const back = await exchange(relay.ports[0], Buffer.from('hello'))
    expect(back.toString()).toBe('hello')
  })

  it('shapes to the rate, shared by concurrent connections', async () => {
    const size = 400_000
    const blob = await server(s => { s.on('data', () => {}); s.end(Buffer.alloc(size, 1)) })
    const relay = await relayTo(blob, 0, 1_000_000) // 1 MB/s, bucket 64 KiB deep
    const t0 = performance.now()
    const got = await Promise.all([exchange(relay.ports[0], Buffer.alloc(0)), exchange(relay.ports[0], Buffer.alloc(0))])
    const seconds = (performance.now() - t0) / 1000
    expect(got.map(g => g.length)).toEqual([size, size])
    // 800 kB at 1 MB/s less the initial 64 KiB burst: >= ~0.73 s, whatever the connection count.
    expect(seconds).toBeGreaterThan(0.7)
    expect(seconds).toBeLessThan(5)
    expect(relay.counters().down).toBe(2 * size)
  })

  it('token bucket: the burst passes at once, then the rate', async () => {
    const bucket = createTokenBucket(1000, 500, () => 0) // a clock that never advances: only the sleep pays
    const t0 = performance.now()
    await bucket.take(500)
    expect(performance.now() - t0).toBeLessThan(50)
    const t1 = performance.now()
    await bucket.take(100) // 100 bytes short at 1000 B/s: ~100 ms
    expect(performance.now() - t1).toBeGreaterThanOrEqual(90)
  })

  it('parses mappings and refuses malformed ones', () => {
    expect(parseMapping('10.77.0.1:8440=127.0.0.1:18440')).toEqual({ listenHost: '10.77.0.1', listenPort: 8440, targetHost: '127.0.0.1', targetPort: 18440 })
    expect(() => parseMapping('10.77.0.1:8440')).toThrow(/bad --map/)
  })
})

describe('baseline file server paths', () => {
  it('maps URLs under the root and refuses escapes', () => {
    expect(filePathFor('/srv/www', '/base.img.zst')).toBe('/srv/www/base.img.zst')
    expect(filePathFor('/srv/www', '/default.castr/ab12/ab12cd.cacnk?x=1')).toBe('/srv/www/default.castr/ab12/ab12cd.cacnk')
    expect(filePathFor('/srv/www', '/../etc/passwd')).toBeNull()
    expect(filePathFor('/srv/www', '/%2e%2e/%2e%2e/etc/passwd')).toBeNull()
    expect(filePathFor('/srv/www', '/a/../b')).toBe('/srv/www/b')
    expect(filePathFor('/srv/www', '/a%00b')).toBeNull()
    expect(filePathFor('/srv/www', '/%zz')).toBeNull()
  })
})
