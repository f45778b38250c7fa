/**
 * End to end with real processes: `trimswarm coordinator` spawned with a
 * config whose `ldap` points at a real slapd, driven by the real CLI
 * (policy, token, publish) and by HTTP clients as alice, bob and an agent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { COORDINATOR_MMAP_THRESHOLD_BYTES } from '../../coordinator/constants.ts'
import { join } from 'node:path'
import { routes } from '../../protocol/api.ts'
import { importPublicKey, openSignedManifest } from '../../protocol/signed-manifest.ts'
import { freePort, startTestSlapd, testLdapInit, TEST_LDAP_PASSWORDS as PW, type TestSlapd } from '../helpers/slapd.ts'
import { seededBytes, tempDir, type TempDir } from '../helpers/images.ts'
import { CLI, cli as runCli, type CliResult } from '../helpers/cli-process.ts'


interface Proc { child: ChildProcess, stdout: string[], stderr: string[], exited: Promise<number | null> }

function startCoordinatorProcess (args: string[], env: NodeJS.ProcessEnv = process.env): Proc {
  const child = spawn(process.execPath, [CLI, 'coordinator', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
  const stdout: string[] = []
  const stderr: string[] = []
  child.stdout!.setEncoding('utf8').on('data', (d: string) => stdout.push(d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d))
  const exited = new Promise<number | null>(resolve => child.once('exit', (code) => { resolve(code) }))
  return { child, stdout, stderr, exited }
}

async function waitFor (p: Proc, pattern: RegExp, ms = 20_000): Promise<void> {
  const until = Date.now() + ms
  while (!pattern.test(p.stdout.join(''))) {
    if (p.child.exitCode != null) throw new Error(`coordinator exited ${p.child.exitCode}: ${p.stderr.join('')}`)
    if (Date.now() > until) throw new Error(`timed out waiting for ${pattern}: ${p.stdout.join('')} ${p.stderr.join('')}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

describe('trimswarm coordinator as a process, with a real slapd', () => {
  let slapd: TestSlapd
  let dir: TempDir
  let proc: Proc
  let url: string
  let dataDir: string
  let configFile: string
  let adminTokenFile: string
  let listen: string
  const cli = async (...args: string[]): Promise<CliResult> => await runCli([...args, '--coordinator', url, '--token-file', adminTokenFile], { timeout: 60_000 })
  const get = async (path: string, token?: string, init: RequestInit = {}): Promise<Response> =>
    await fetch(url + path, { ...init, headers: { ...(init.headers as Record<string, string>), ...(token != null ? { authorization: `Bearer ${token}` } : {}) } })
  const login = async (user: string, password: string): Promise<Response> =>
    await fetch(url + routes.login, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, password }) })

  beforeAll(async () => {
    ;[slapd, dir] = await Promise.all([startTestSlapd(), tempDir()])
    dataDir = join(dir.path, 'data')
    adminTokenFile = join(dataDir, 'admin.token')
    configFile = join(dir.path, 'coordinator.json')
    await writeFile(configFile, JSON.stringify({ logLevel: 'warn', ldap: testLdapInit(slapd), sessionTtlSeconds: 600 }, null, 2))
    listen = `127.0.0.1:${await freePort()}`
    url = `http://${listen}`
    proc = startCoordinatorProcess(['--data', dataDir, '--listen', listen, '--config', configFile])
    await waitFor(proc, /coordinator listening on/)
  })
  afterAll(async () => {
    if (proc?.child.exitCode == null) proc?.child.kill('SIGKILL')
    await slapd?.stop()
    await dir?.cleanup()
  })

  it('names DIR/admin.token (mode 0600) on first start, never printing the token itself', async () => {
    const token = (await readFile(adminTokenFile, 'utf8')).trim()
    expect(proc.stdout.join('')).toContain(adminTokenFile)
    expect(proc.stdout.join('') + proc.stderr.join('')).not.toContain(token)
    expect((await stat(adminTokenFile)).mode & 0o777).toBe(0o600)
    expect((await get(routes.health)).status).toBe(200)
  })

  it('serves desk to alice once policy gives group desk the image, 403 to bob, 401 for bad logins', async () => {
    expect((await cli('policy', 'set', 'desk', '--images', 'desk', '--wan-limit', '20mbit', '--update-window', '22:00-06:00')).code).toBe(0)
    const shown = await cli('policy', 'show', 'desk', '--json')
    expect(JSON.parse(shown.stdout)).toMatchObject({ images: ['desk'], wanLimitBps: 2_500_000, updateWindow: { start: '22:00', end: '06:00' } })

    const img = join(dir.path, 'desk.img')
    await writeFile(img, seededBytes(42, 512 * 1024))
    const published = await cli('publish', img, '--image', 'desk', '--version', 'v1', '--json')
    expect(published.code, published.stderr).toBe(0)

    const alice = await login('alice', PW.alice)
    expect(alice.status).toBe(200)
    const aliceToken = (await alice.json()).token
    const manifest = await get(routes.version('desk', 'latest'), aliceToken)
    expect(manifest.status).toBe(200)
    const key = await (await get(routes.key)).json()
    const opened = await openSignedManifest(new Uint8Array(await manifest.arrayBuffer()), await importPublicKey(new Uint8Array(Buffer.from(key.publicKey, 'base64'))))
    expect(opened.manifest).toMatchObject({ name: 'desk', version: 'v1' })
    expect((await get(routes.tokens, aliceToken)).status).toBe(403)
    expect((await get(routes.policies, aliceToken)).status).toBe(403)

    const bobToken = (await (await login('bob', PW.bob)).json()).token
    const bob = await get(routes.version('desk', 'latest'), bobToken)
    expect(bob.status).toBe(403)
    expect((await bob.json()).error.name).toBe('ForbiddenError')

    const wrong = await login('alice', 'wrong')
    const unknown = await login('nobody', 'wrong')
    expect([wrong.status, unknown.status]).toEqual([401, 401])
    expect(await wrong.text()).toBe(await unknown.text())
  })

  it('a machine token for group desk works until `token revoke`', async () => {
    const created = await cli('token', 'create', '--group', 'desk', '--name', 'e2e', '--json')
    expect(created.code, created.stderr).toBe(0)
    const { id, token } = JSON.parse(created.stdout)
    expect((await get(routes.version('desk', 'latest'), token)).status).toBe(200)
    expect((await cli('token', 'list')).stdout).toMatch(new RegExp(`${id}\\s+desk\\s+e2e\\s+\\S+\\s+active`))
    expect((await cli('token', 'revoke', id)).code).toBe(0)
    expect((await get(routes.version('desk', 'latest'), token)).status).toBe(401)
    expect((await cli('token', 'list')).stdout).toMatch(new RegExp(`${id}.*revoked`))
  })

  it('answers malformed, oversized and unknown-field bodies over HTTP with JSON errors', async () => {
    const admin = (await readFile(adminTokenFile, 'utf8')).trim()
    const post = async (path: string, body: string): Promise<Response> => await get(path, admin, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
    expect((await post(routes.tokens, '{"group":')).status).toBe(400)
    expect((await post(routes.tokens, '{"group":"desk","role":"admin"}')).status).toBe(400)
    // the client is still sending when the server refuses: it must read the 413, not a reset (EPIPE); see refused-bodies.test.ts
    const tooBig = JSON.stringify({ group: 'desk', name: 'x'.repeat(16 * 1024 * 1024) })
    for (let i = 0; i < 10; i++) {
      const big = await post(routes.tokens, tooBig)
      expect(big.status).toBe(413)
      expect((await big.json()).error.name).toBe('TooLargeError')
    }
    expect((await get(routes.health)).status).toBe(200) // still serving after the oversized body
    expect((await get('/v1/policies/..%2F..%2Fetc', admin, { method: 'PUT', body: '{}' })).status).toBe(400)
  })

  it('answers login 503 while LDAP is stopped and recovers when it returns', async () => {
    await slapd.pause()
    try {
      const down = await login('alice', PW.alice)
      expect(down.status).toBe(503)
      expect((await down.json()).error.message).toMatch(/directory/i)
      expect((await get(routes.health)).status).toBe(200)
    } finally {
      await slapd.resume()
    }
    expect((await login('alice', PW.alice)).status).toBe(200)
  })

  it('runs, as the PID it was started as, with the glibc mmap threshold fixed; not when told otherwise', async () => {
    // the process's environment as it started; glibc parses GLIBC_TUNABLES in place, turning the ':' between
    // tunables into NULs, so the tunables after the first appear as entries of their own ("glibc.x=...")
    const tunables = async (pid: number): Promise<string | undefined> => {
      const entries = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0')
      const at = entries.findIndex(v => v.startsWith('GLIBC_TUNABLES='))
      if (at < 0) return undefined
      let end = at + 1
      while (end < entries.length && entries[end].startsWith('glibc.')) end++
      return entries.slice(at, end).join(':')
    }
    // the re-exec keeps the PID: the process a supervisor started (and may kill -9) is the server
    expect(await tunables(proc.child.pid!)).toBe(`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=${COORDINATOR_MMAP_THRESHOLD_BYTES}`)
    const { GLIBC_TUNABLES: _, ...env } = process.env
    const cases: Array<[NodeJS.ProcessEnv, string | undefined]> = [
      [{ ...env, TRIMSWARM_NO_REEXEC: '1' }, undefined],
      [{ ...env, GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }, `GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=${COORDINATOR_MMAP_THRESHOLD_BYTES}`],
      [{ ...env, GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' }, 'GLIBC_TUNABLES=glibc.malloc.mmap_threshold=65536']
    ]
    for (const [caseEnv, expected] of cases) {
      const other = startCoordinatorProcess(['--data', join(dir.path, 'data-tuning'), '--listen', `127.0.0.1:${await freePort()}`], caseEnv)
      try {
        await waitFor(other, /coordinator listening on/)
        expect(await tunables(other.child.pid!)).toBe(expected)
      } finally {
        other.child.kill('SIGTERM')
        await other.exited
      }
    }
  })

  it('exits cleanly on SIGTERM and restarts on the same data without printing the token again', async () => {
    proc.child.kill('SIGTERM')
    expect(await proc.exited).toBe(0)
    expect(proc.stderr.join('')).toMatch(/coordinator stopped/)

    proc = startCoordinatorProcess(['--data', dataDir, '--listen', listen, '--config', configFile])
    await waitFor(proc, /coordinator listening on/)
    const token = (await readFile(adminTokenFile, 'utf8')).trim()
    expect(proc.stdout.join('')).not.toContain(token)
    expect((await get(routes.version('desk', 'v1'), token)).status).toBe(200) // the version survived
    proc.child.kill('SIGINT')
    expect(await proc.exited).toBe(0)
  })
})
