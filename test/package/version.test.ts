/**
 * One version everywhere: protocol/version.ts holds package.json's version
 * (scripts/sync-version.ts writes it), `trimswarm --version` / `-V` print it,
 * and the agent's requests name it in their User-Agent. /healthz and the
 * OpenAPI document are checked in test/coordinator/coordinator-api.test.ts.
 */
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { runNode, type CliResult } from '../helpers/cli-process.ts'
import { createCoordinatorClient } from '../../peer-agent/coordinator-client.ts'
import { TRIMSWARM_VERSION } from '../../protocol/version.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const CLI = join(ROOT, 'bin', 'trimswarm.js')
const PACKAGE_VERSION: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version

async function run (args: string[]): Promise<CliResult> {
  return await runNode(args, { cwd: ROOT })
}

describe('version', () => {
  it('protocol/version.ts holds package.json\'s version (scripts/sync-version.ts --check agrees)', async () => {
    expect(TRIMSWARM_VERSION).toBe(PACKAGE_VERSION)
    const check = await run([join(ROOT, 'scripts', 'sync-version.ts'), '--check'])
    expect(check.code, check.stderr).toBe(0)
  })

  it('trimswarm --version and -V print it; --json adds the Node version; anything else is a usage error', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await run([CLI, flag])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toBe(`trimswarm ${PACKAGE_VERSION}\n`)
    }
    const json = await run([CLI, '--version', '--json'])
    expect(json.code, json.stderr).toBe(0)
    expect(JSON.parse(json.stdout)).toEqual({ version: PACKAGE_VERSION, node: process.versions.node })
    const bad = await run([CLI, '--version', 'extra'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/^trimswarm: --version takes only --json/)
  })

  describe('agent User-Agent', () => {
    let server: Server | undefined
    afterAll(async () => { await new Promise(resolve => server?.close(resolve)) })

    it('every request of the agent\'s coordinator client says trimswarm/VERSION node/NODE', async () => {
      const agents: Array<string | undefined> = []
      server = createServer((req, res) => { agents.push(req.headers['user-agent']); res.writeHead(200); res.end('x') })
      await new Promise<void>(resolve => server!.listen(0, '127.0.0.1', resolve))
      const client = createCoordinatorClient({ logger: { info: () => {}, warn: () => {} } }, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, auth: { token: 't' } })
      await client.bytes('GET', '/v1/images/ws/versions/v1/manifest')
      expect(agents).toEqual([`trimswarm/${PACKAGE_VERSION} node/${process.versions.node}`])
    })
  })
})
