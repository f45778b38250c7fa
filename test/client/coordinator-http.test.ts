/**
 * The one coordinator HTTP client (client/coordinator-http.ts) against real HTTP
 * servers on 127.0.0.1: failover to the next coordinator on a refused connection
 * or a 5xx (not on a 4xx), the coordinator that answered asked first afterwards,
 * one unreachable message naming every URL, the wire error with its status, and
 * the URL check.
 */
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { createCoordinatorHttp, parseCoordinatorUrls } from '../../client/coordinator-http.ts'
import { CoordinatorHttpError, CoordinatorUnreachableError, CoordinatorUrlError, httpDetailsOf } from '../../client/errors.ts'
import { parseDaemonConfig } from '../../peer-agent/daemon.ts'
import { createConnectProbe, createPaceUpdater } from '../../peer-agent/background-pacer.ts'
import { createCoordinatorClient } from '../../peer-agent/coordinator-client.ts'
import { silentLogger } from '../../peer-agent/interface.ts'
import { NotFoundError } from '../../protocol/errors.ts'
import { freePort } from '../helpers/slapd.ts'
import { cli, ROOT, runNode } from '../helpers/cli-process.ts'
import { tempDir } from '../helpers/images.ts'

let servers: Server[] = []

async function serve (handler: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<{ url: string, requests: string[] }> {
  const requests: string[] = []
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''}`)
    handler(req, res, requests.length)
  })
  servers.push(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests }
}

const ok = (res: ServerResponse): void => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}') }

function capture (): { warn: (m: string) => void, warnings: string[] } {
  const warnings: string[] = []
  return { warnings, warn: (m) => { warnings.push(m) } }
}

afterEach(async () => {
  for (const s of servers) { s.closeAllConnections(); await new Promise(resolve => s.close(resolve)) }
  servers = []
})

describe('coordinator HTTP client', () => {
  it('loading it does not load undici (node:http through require, not its ESM facade: 30-80 ms of every agent start)', async () => {
    const module = join(import.meta.dirname, '..', '..', 'client', 'coordinator-http.ts')
    const script = `await import(${JSON.stringify(module)}); console.log(JSON.stringify(process.moduleLoadList.filter(m => m.includes('undici'))))`
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script])
    expect(JSON.parse(stdout)).toEqual([])
  })

  it('a 5xx from the first coordinator asks the next; the one that answered is asked first from then on', async () => {
    const a = await serve((req, res) => { res.writeHead(503, { 'content-type': 'application/json' }); res.end('{"error":{"name":"UnavailableError","message":"restarting"}}') })
    const b = await serve((req, res) => ok(res))
    const logger = capture()
    const http = createCoordinatorHttp({ logger }, { urls: [a.url, b.url], retry: { attempts: 2, baseMs: 10 }, failoverDelayMs: 1 })
    expect(await http.json('GET', '/v1/auth/me', undefined, { token: 't' })).toEqual({ ok: true })
    expect(http.url).toBe(b.url)
    expect(await http.json('GET', '/v1/auth/me', undefined, { token: 't' })).toEqual({ ok: true })
    expect(a.requests).toHaveLength(1)
    expect(b.requests).toEqual(['GET /v1/auth/me Bearer t', 'GET /v1/auth/me Bearer t'])
    expect(logger.warnings).toEqual([`GET /v1/auth/me: ${a.url}: HTTP 503 restarting; trying ${b.url}`])
  })

  it('a coordinator that is down (connection refused) is skipped for the next, without the rounds of retries', async () => {
    const down = `http://127.0.0.1:${await freePort()}`
    const b = await serve((req, res) => ok(res))
    const http = createCoordinatorHttp({ logger: capture() }, { urls: [down, b.url], retry: { attempts: 6, baseMs: 60_000 }, failoverDelayMs: 1 })
    const started = performance.now()
    expect(await http.json('GET', '/v1/key', undefined)).toEqual({ ok: true })
    expect(performance.now() - started).toBeLessThan(5_000)
  })

  it('a 4xx is an answer: thrown at once as the wire error with its status, the next coordinator not asked', async () => {
    const a = await serve((req, res) => { res.writeHead(404, { 'content-type': 'application/json' }); res.end('{"error":{"name":"NotFoundError","message":"no image ws"}}') })
    const b = await serve((req, res) => ok(res))
    const http = createCoordinatorHttp({ logger: capture() }, { urls: [a.url, b.url], retry: { attempts: 3, baseMs: 10 } })
    const err = await http.bytes('GET', '/v1/images/ws/versions/v1/manifest').catch(e => e)
    expect(err).toBeInstanceOf(NotFoundError)
    expect(err.message).toBe('no image ws')
    expect(httpDetailsOf(err)).toEqual({ status: 404, method: 'GET', path: '/v1/images/ws/versions/v1/manifest' })
    expect(b.requests).toEqual([])
  })

  it('every coordinator down and none ever answered: one message naming each, at once', async () => {
    const [p1, p2] = [await freePort(), await freePort()]
    const http = createCoordinatorHttp({ logger: capture() }, { urls: [`http://127.0.0.1:${p1}`, `http://127.0.0.1:${p2}/`], retry: { attempts: 6, baseMs: 60_000 }, failoverDelayMs: 1 })
    const err = (await http.json('GET', '/v1/key', undefined).catch((e: unknown) => e)) as Error
    expect(err).toBeInstanceOf(CoordinatorUnreachableError)
    expect(err.message).toMatch(new RegExp(`^cannot reach the coordinator at http://127.0.0.1:${p1}: ECONNREFUSED.*; http://127.0.0.1:${p2}: ECONNREFUSED`))
  })

  it('asked once (the admin commands, publish): a proxy\'s 502 page is a CoordinatorHttpError with its status', async () => {
    const a = await serve((req, res) => { res.writeHead(502, { 'content-type': 'text/html' }); res.end('<html>bad gateway</html>') })
    const err = (await createCoordinatorHttp({}, { urls: [a.url] }).json('POST', '/v1/tokens', undefined, { body: { group: 'g' } }).catch((e: unknown) => e)) as Error
    expect(err).toBeInstanceOf(CoordinatorHttpError)
    expect(err.message).toBe('POST /v1/tokens: HTTP 502')
    expect(httpDetailsOf(err)?.status).toBe(502)
  })

  it('a connection that breaks after the request was read: a GET is asked again, a version commit (POST) is sent once only', async () => {
    // the coordinator reads each kept-alive connection's second request, acts on it, then the connection breaks
    const seen = new Map<object, number>()
    const a = await serve((req, res) => {
      const n = (seen.get(req.socket) ?? 0) + 1
      seen.set(req.socket, n)
      req.resume()
      req.on('end', () => { if (n >= 2) req.socket.destroy(); else ok(res) })
    })
    const http = createCoordinatorHttp({ logger: capture() }, { urls: [a.url] })
    expect(await http.json('GET', '/v1/auth/me', undefined, { token: 't' })).toEqual({ ok: true })
    expect(await http.json('POST', '/v1/images/ws/versions', undefined, { token: 't', body: 'manifest' })).toEqual({ ok: true })
    expect(a.requests.filter(r => r.startsWith('POST'))).toEqual(['POST /v1/images/ws/versions Bearer t'])
    expect(await http.json('GET', '/v1/auth/me', undefined, { token: 't' })).toEqual({ ok: true })
    expect(a.requests.filter(r => r.startsWith('GET'))).toHaveLength(3)
    // a POST its caller calls idempotent (a read, an event batch) may use the kept-alive connection
    expect(await http.json('POST', '/v1/chunks/missing', undefined, { token: 't', body: '{}', idempotent: true })).toEqual({ ok: true })
  })

  it('checks every URL: http or https, no query; a trailing slash is dropped', () => {
    expect(parseCoordinatorUrls(['http://a:8440/', 'https://b/trimswarm'])).toEqual(['http://a:8440', 'https://b/trimswarm'])
    for (const bad of ['ftp://a', 'a:8440', 'http://a/?x=1', '']) expect(() => parseCoordinatorUrls(['http://ok', bad])).toThrow(CoordinatorUrlError)
    expect(() => parseCoordinatorUrls([])).toThrow(/no coordinator URL/)
  })

  it('the daemon config takes a "coordinators" list, or the single "coordinator" as before, not both', () => {
    const base = { tokenFile: 't', dataDir: 'd' }
    expect(parseDaemonConfig({ ...base, coordinator: 'http://a' }, '/').coordinator).toEqual(['http://a'])
    expect(parseDaemonConfig({ ...base, coordinators: ['http://a', 'http://b'] }, '/').coordinator).toEqual(['http://a', 'http://b'])
    expect(() => parseDaemonConfig({ ...base, coordinator: 'http://a', coordinators: ['http://b'] }, '/')).toThrow(/either "coordinator" or a "coordinators" list/)
    expect(() => parseDaemonConfig({ ...base, coordinators: [] }, '/')).toThrow(/list of URLs/)
    expect(() => parseDaemonConfig(base, '/')).toThrow(/either "coordinator" or a "coordinators" list/)
  })
})

describe('the agent after a failover', () => {
  it('the background pacer\'s delay probe and pace updates follow the client to the coordinator it failed over to', async () => {
    const down = `http://127.0.0.1:${await freePort()}`
    const b = await serve((req, res) => ok(res))
    const client = createCoordinatorClient({ logger: silentLogger }, { url: [down, b.url], auth: { token: 't' }, retry: { attempts: 2, baseMs: 10 } })
    await client.json('GET', '/v1/auth/me', { parse: (v: unknown) => v, json: {} })
    expect(client.url).toBe(b.url)
    await createConnectProbe(() => client.url)({}) // a handshake with the first would be refused
    await createPaceUpdater(() => client.url, client.authorization)({ session: 's', rate: 1 } as never, {}).catch(() => {})
    expect(b.requests.at(-1)).toBe('POST /v1/pace Bearer t')
  })
})

describe('the CLI and the client', () => {
  it('agent sync checks every --coordinator before it does anything: a bad one is a usage error (exit 2, one line naming it)', async () => {
    const r = await cli(['agent', 'sync', 'ws', '--coordinator', 'http://127.0.0.1:8440', '--coordinator', 'ftp://backup', '--token-file', '/nonexistent', '--data', '/nonexistent-data', '--out', '/nonexistent-out/ws.img'])
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr.split('\n')[0]).toBe('trimswarm agent sync: --coordinator: coordinator URL "ftp://backup" is not an http:// or https:// URL (e.g. http://127.0.0.1:8440)')
  })
})

describe('the client over https', () => {
  // node:http/https replaced fetch: TLS must still trust what Node trusts (its CA store and
  // NODE_EXTRA_CA_CERTS, docs/OPERATIONS.md) and refuse a certificate it cannot verify.
  it('trusts a private CA given in NODE_EXTRA_CA_CERTS and refuses a certificate it cannot verify', async () => {
    const dir = await tempDir()
    try {
      const d = dir.path
      const ssl = async (args: string[]): Promise<unknown> => await promisify(execFile)('openssl', args)
      await ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(d, 'ca.key'), '-out', join(d, 'ca.pem'), '-days', '1', '-subj', '/CN=trimswarm test CA'])
      await ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(d, 'server.key'), '-out', join(d, 'server.csr'), '-subj', '/CN=127.0.0.1'])
      await writeFile(join(d, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n')
      await ssl(['x509', '-req', '-in', join(d, 'server.csr'), '-CA', join(d, 'ca.pem'), '-CAkey', join(d, 'ca.key'), '-CAcreateserial', '-out', join(d, 'server.pem'), '-days', '1', '-extfile', join(d, 'ext.cnf')])
      const server = createHttpsServer({ cert: await readFile(join(d, 'server.pem')), key: await readFile(join(d, 'server.key')) }, (req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ auth: req.headers.authorization ?? null }))
      })
      servers.push(server)
      await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`

      const untrusted = createCoordinatorHttp({}, { urls: [url] })
      const err = await untrusted.json('GET', '/v1/auth/me', undefined, { token: 't' }).then(() => undefined, (e: Error) => e)
      expect(err).toBeInstanceOf(CoordinatorUnreachableError)
      expect(err?.message).toMatch(new RegExp(`^cannot reach the coordinator at ${url}: .*(certificate|self.signed)`, 'i'))

      const script = `import { createCoordinatorHttp } from ${JSON.stringify(join(ROOT, 'client', 'coordinator-http.ts'))}
        console.log(JSON.stringify(await createCoordinatorHttp({}, { urls: [${JSON.stringify(url)}] }).json('GET', '/v1/auth/me', undefined, { token: 't' })))`
      const r = await runNode(['--input-type=module', '-e', script], { env: { NODE_EXTRA_CA_CERTS: join(d, 'ca.pem') } })
      expect(r.stderr).toBe('')
      expect(JSON.parse(r.stdout)).toEqual({ auth: 'Bearer t' })
    } finally {
      await dir.cleanup()
    }
  })
})
