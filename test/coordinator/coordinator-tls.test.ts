/** HTTPS: a coordinator configured with `tls` serves over TLS with that certificate (a throwaway CA made by openssl). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { request } from 'node:https'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { ConfigError } from '../../coordinator/errors.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'

const run = promisify(execFile)

async function httpsGet (url: string, ca?: Buffer): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { ca, rejectUnauthorized: true }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => { body += d }).on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.on('error', reject)
    req.end()
  })
}

describe('coordinator over HTTPS', () => {
  let dir: TempDir
  let coord: Coordinator
  let ca: Buffer
  beforeAll(async () => {
    dir = await tempDir()
    const d = dir.path
    // a CA, and a server certificate for 127.0.0.1 signed by it
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(d, 'ca.key'), '-out', join(d, 'ca.pem'), '-days', '1', '-subj', '/CN=trimswarm test CA'])
    await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(d, 'server.key'), '-out', join(d, 'server.csr'), '-subj', '/CN=127.0.0.1'])
    await writeFile(join(d, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n')
    await run('openssl', ['x509', '-req', '-in', join(d, 'server.csr'), '-CA', join(d, 'ca.pem'), '-CAkey', join(d, 'ca.key'), '-CAcreateserial', '-out', join(d, 'server.pem'), '-days', '1', '-extfile', join(d, 'ext.cnf')])
    ca = await readFile(join(d, 'ca.pem'))
    coord = createCoordinator({ dataDir: join(d, 'data'), listen: '127.0.0.1:0', logLevel: 'silent', config: { tls: { cert: join(d, 'server.pem'), key: join(d, 'server.key') } } })
    await coord.start()
  })
  afterAll(async () => {
    await coord?.stop()
    await dir?.cleanup()
  })

  it('listens on https:// and is verified with the CA', async () => {
    expect(coord.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const r = await httpsGet(coord.url + '/healthz', ca)
    expect(r.status).toBe(200)
    expect(JSON.parse(r.body)).toMatchObject({ ok: true })
  })

  it('is refused by a client that does not trust the CA', async () => {
    await expect(httpsGet(coord.url + '/healthz')).rejects.toThrow(/self.signed|unable to verify|certificate/i)
  })

  it('refuses to start with a missing certificate file', async () => {
    const c = createCoordinator({ dataDir: join(dir.path, 'other'), listen: '127.0.0.1:0', logLevel: 'silent', config: { tls: { cert: join(dir.path, 'nope.pem'), key: join(dir.path, 'server.key') } } })
    await expect(c.start()).rejects.toThrow(ConfigError)
  })
})
