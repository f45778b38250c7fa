/**
 * The agent's coordinator client against a real HTTP server on 127.0.0.1 that
 * misbehaves the way a restarting coordinator does: nothing listening
 * (connection refused), connections reset, 502/503, a body cut off mid-way.
 * Idempotent requests are retried with bounded exponential backoff and a
 * warning per retry, then succeed once the server is back; other 4xx are not
 * retried; the client gives up after its tries with CoordinatorUnreachableError
 * and stops waiting at once when its AbortSignal fires.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { createCoordinatorClient } from '../../peer-agent/coordinator-client.ts'
import { CoordinatorUnreachableError } from '../../peer-agent/errors.ts'
import type { AgentLogger } from '../../peer-agent/interface.ts'
import { NotFoundError } from '../../protocol/errors.ts'
import { freePort } from '../helpers/slapd.ts'
import { seededBytes } from '../helpers/images.ts'

type Handler = (req: IncomingMessage, res: ServerResponse, n: number, body: string) => void

let servers: Server[] = []

/** An HTTP server on `port` (0: any); `handler` gets each request with its 1-based number and body. */
async function serve (handler: Handler, port = 0): Promise<{ url: string, requests: string[] }> {
  const requests: string[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (d: Buffer) => { body += d.toString() })
    req.on('end', () => {
      requests.push(`${req.method} ${req.url} ${body}`)
      handler(req, res, requests.length, body)
    })
  })
  servers.push(server)
  await new Promise<void>(resolve => server.listen(port, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests }
}

function capture (): AgentLogger & { warnings: string[] } {
  const warnings: string[] = []
  return { warnings, info: () => {}, warn: (m) => { warnings.push(m) } }
}

async function until (cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out')
    await sleep(5)
  }
}

const BODY = seededBytes(7, 100_000)

async function closeServers (): Promise<void> {
  for (const s of servers) { s.closeAllConnections(); await new Promise(resolve => s.close(resolve)) }
  servers = []
}

afterEach(closeServers)

/** A client that has had one answer from a coordinator on `port`, which is then stopped (a restart begins). */
async function establishedClient (port: number, logger: AgentLogger, retry: { attempts: number, baseMs: number, maxMs?: number }): Promise<ReturnType<typeof createCoordinatorClient>> {
  await serve((req, res) => { res.writeHead(200); res.end('ok') }, port)
  const client = createCoordinatorClient({ logger }, { url: `http://127.0.0.1:${port}`, auth: { token: 't' }, retry })
  await client.bytes('GET', '/v1/auth/me')
  await closeServers()
  return client
}

describe('coordinator client retries', () => {
  it('first contact refused (wrong URL or port): fails at once with one message, no retries', async () => {
    const port = await freePort()
    const logger = capture()
    const client = createCoordinatorClient({ logger }, { url: `http://127.0.0.1:${port}`, auth: { token: 't' }, retry: { attempts: 6, baseMs: 500 } })
    const started = performance.now()
    const err = await client.bytes('GET', '/v1/auth/me').catch(e => e)
    expect(performance.now() - started).toBeLessThan(1_000)
    expect(err).toBeInstanceOf(CoordinatorUnreachableError)
    expect(err.message).toMatch(new RegExp(`^cannot reach the coordinator at http://127.0.0.1:${port}: ECONNREFUSED`))
    expect(logger.warnings).toEqual([])
  })

  it('port 9 (discard; fetch refused to dial it, node:http dials and is refused): fails at once too', async () => {
    for (const [url, why] of [['http://127.0.0.1:9', /^cannot reach the coordinator at http:\/\/127\.0\.0\.1:9: ECONNREFUSED/]] as const) {
      const logger = capture()
      const client = createCoordinatorClient({ logger }, { url, auth: { token: 't' }, retry: { attempts: 6, baseMs: 500 } })
      const started = performance.now()
      const err = await client.bytes('GET', '/v1/auth/me').catch(e => e)
      expect(performance.now() - started).toBeLessThan(3_000)
      expect(err).toBeInstanceOf(CoordinatorUnreachableError)
      expect(err.message).toMatch(why)
      expect(logger.warnings).toEqual([])
    }
  })

  it('connection refused after the coordinator answered once (a restart): waits with backoff until it listens again, then succeeds', async () => {
    const port = await freePort()
    const logger = capture()
    const client = await establishedClient(port, logger, { attempts: 6, baseMs: 40, maxMs: 400 })
    const pending = client.bytes('GET', '/v1/images/ws/versions/v1/manifest')
    // the coordinator comes back only after the client has been refused twice
    await until(() => logger.warnings.length >= 2)
    const { requests } = await serve((req, res) => { res.writeHead(200); res.end(BODY) }, port)
    expect(Buffer.from(await pending).equals(Buffer.from(BODY))).toBe(true)
    expect(requests).toHaveLength(1)
    expect(logger.warnings[0]).toMatch(/GET \/v1\/images\/ws\/versions\/v1\/manifest: ECONNREFUSED.*; retrying in \d+\.\d s \(try 2 of 6\)/)
    expect(logger.warnings[1]).toMatch(/\(try 3 of 6\)/)
  })

  it('POST .../blocks after a reset connection, 502 and 503: sent again (same body) until it streams', async () => {
    const logger = capture()
    const { url, requests } = await serve((req, res, n) => {
      if (n === 1) { req.socket.destroy(); return }
      if (n === 2) { res.writeHead(502); res.end('bad gateway'); return }
      if (n === 3) { res.writeHead(503, { 'content-type': 'application/json' }); res.end(JSON.stringify({ error: { name: 'TrimswarmError', message: 'restarting' } })); return }
      res.writeHead(200); res.end(BODY)
    })
    const client = createCoordinatorClient({ logger }, { url, auth: { token: 't' }, retry: { attempts: 6, baseMs: 10, maxMs: 100 } })
    const res = await client.stream('POST', '/v1/images/ws/versions/v1/blocks', { ranges: [[0, 25]] })
    const parts: Buffer[] = []
    for await (const p of res.body) parts.push(Buffer.from(p))
    expect(Buffer.concat(parts).equals(Buffer.from(BODY))).toBe(true)
    expect(requests).toEqual(Array(4).fill('POST /v1/images/ws/versions/v1/blocks {"ranges":[[0,25]]}'))
    expect(logger.warnings).toHaveLength(3)
    expect(logger.warnings[1]).toMatch(/HTTP 502/)
    expect(logger.warnings[2]).toMatch(/HTTP 503 restarting/)
    expect(client.receivedBytes).toBeGreaterThanOrEqual(BODY.length)
  })

  it('a body cut off mid-way (the coordinator died while sending) is asked again whole', async () => {
    const logger = capture()
    const { url, requests } = await serve((req, res, n) => {
      res.writeHead(200, { 'content-length': String(BODY.length) })
      if (n === 1) {
        res.write(BODY.subarray(0, BODY.length / 2), () => { setTimeout(() => req.socket.destroy(), 20) })
        return
      }
      res.end(BODY)
    })
    const client = createCoordinatorClient({ logger }, { url, auth: { token: 't' }, retry: { attempts: 3, baseMs: 10 } })
    expect(Buffer.from(await client.bytes('GET', '/v1/images/ws/versions/v1/chunks/x')).equals(Buffer.from(BODY))).toBe(true)
    expect(requests).toHaveLength(2)
    expect(logger.warnings[0]).toMatch(/GET \/v1\/images\/ws\/versions\/v1\/chunks\/x: response broke off .*retrying in/)
  })

  it('does not retry a 4xx: the wire error comes back at once', async () => {
    const logger = capture()
    const { url, requests } = await serve((req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { name: 'NotFoundError', message: 'no image ws' } }))
    })
    const client = createCoordinatorClient({ logger }, { url, auth: { token: 't' }, retry: { attempts: 6, baseMs: 10 } })
    const err = await client.bytes('GET', '/v1/images/ws/versions/v1/manifest').catch(e => e)
    expect(err).toBeInstanceOf(NotFoundError)
    expect(err.message).toBe('no image ws')
    expect(requests).toHaveLength(1)
    expect(logger.warnings).toEqual([])
  })

  it('gives up after its tries with CoordinatorUnreachableError, the delays doubling up to the cap', async () => {
    const logger = capture()
    const { url, requests } = await serve((req, res) => { res.writeHead(503); res.end() })
    const client = createCoordinatorClient({ logger }, { url, auth: { token: 't' }, retry: { attempts: 4, baseMs: 20, maxMs: 40 } })
    const err = await client.bytes('GET', '/v1/auth/me').catch(e => e)
    expect(err).toBeInstanceOf(CoordinatorUnreachableError)
    expect(err.message).toMatch(/unreachable after 4 tries/)
    expect(requests).toHaveLength(4)
    // 3 waits: 20, 40, 40 ms (capped), each jittered between half and all of it
    const delays = logger.warnings.map(w => Number(/retrying in (\S+) s/.exec(w)![1]) * 1000)
    expect(delays).toHaveLength(3)
    expect(delays[0]).toBeLessThanOrEqual(20)
    for (const d of delays.slice(1)) { expect(d).toBeGreaterThanOrEqual(0); expect(d).toBeLessThanOrEqual(40) }
  })

  it('stops waiting at once when its AbortSignal fires', async () => {
    const port = await freePort()
    const logger = capture()
    const client = await establishedClient(port, logger, { attempts: 6, baseMs: 60_000 })
    const ac = new AbortController()
    const started = performance.now()
    const pending = client.bytes('GET', '/v1/auth/me', undefined, { signal: ac.signal }).catch(e => e)
    await until(() => logger.warnings.length >= 1)
    ac.abort()
    const err = await pending
    expect(err.name).toBe('AbortError')
    expect(performance.now() - started).toBeLessThan(5_000)
  })
})
