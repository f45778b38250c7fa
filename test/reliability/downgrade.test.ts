/**
 * Promise (issue 13 item 4): a man in the middle between an agent and the
 * coordinator (plain HTTP) cannot make an agent on v2 install v1, neither by
 * rewriting the "latest" answers to v1's nor by replaying v1's genuine signed
 * pointer: `agent sync` refuses with a clear message and a non-zero exit,
 * `agent run` refuses and keeps v2, and v2 stays at the output. Naming the
 * version (`ws@v1`) still installs it. Retired versions are never "latest".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPairSync } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { b3sumFile, makeTestImage, makeUpdatedImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { recordCounts } from './counts.ts'
import { runAgent, spawnAgent, startTamperingProxy, startTestCoordinator, type TestCoordinator } from '../peer-agent/harness.ts'
import { decodeVersionPointer, signVersionPointer } from '../../protocol/version-pointer.ts'

let tmp: TempDir
let coord: TestCoordinator
let v1: TestImage
let v1Sum: string
let v2Sum: string
/** What the coordinator answered while v1 was latest: its signed pointer and its latest/info. */
let v1Pointer: Uint8Array
let v1Info: Uint8Array

async function get (path: string): Promise<Uint8Array> {
  const res = await fetch(coord.url + path, { headers: { authorization: `Bearer ${coord.coordinator.adminToken}` } })
  if (!res.ok) throw new Error(`${path}: ${res.status}`)
  return new Uint8Array(await res.arrayBuffer())
}

beforeAll(async () => {
  tmp = await tempDir('trimswarm-downgrade-')
  v1 = await makeTestImage(tmp.path, { name: 'base', sizeMiB: 4, seed: 3 })
  const v2 = await makeUpdatedImage(tmp.path, v1, { name: 'next', seed: 4 })
  v1Sum = await b3sumFile(v1.path)
  v2Sum = await b3sumFile(v2.path)
  coord = await startTestCoordinator(tmp.path)
  await coord.publish('ws', 'v1', v1.path)
  v1Pointer = await get('/v1/images/ws/latest')
  v1Info = await get('/v1/images/ws/versions/latest/info')
  await coord.publish('ws', 'v2', v2.path)
})

/** Downgrade attempts refused with v2 kept. */
let refused = 0

afterAll(async () => {
  await coord?.stop()
  await tmp?.cleanup()
  await recordCounts('downgrade', {
    promise: 'a man in the middle replaying or forging "latest" cannot move an agent (sync or daemon) from v2 to v1; a named version still installs',
    cases: refused,
    faultsInjected: refused,
    bytesLost: 0
  })
})

function args (url: string, data: string, out: string, image = 'ws'): string[] {
  return ['sync', image, '--coordinator', url, '--token-file', coord.tokenFile, '--data', data, '--out', out, '--json', '--retries', '1', '--retry-delay', '50', '--no-index', '--no-lan']
}

/** A proxy that answers every "latest" question with v1's genuine (old) answers. */
async function replayV1 (): Promise<{ url: string, close: () => Promise<void> }> {
  return await startTamperingProxy(coord.url, (path, body) => {
    if (path.endsWith('/versions/latest/info')) return v1Info
    if (path.endsWith('/latest')) return v1Pointer
    return body
  })
}

describe('downgrade through the unsigned or a replayed "latest"', () => {
  const data = (): string => join(tmp.path, 'agent-data')
  const out = (): string => join(tmp.path, 'vm', 'ws.img')

  it('the agent installs v2 as latest', async () => {
    const r = await runAgent(args(coord.url, data(), out()))
    expect(r.code, r.stderr).toBe(0)
    expect(r.summary?.version).toBe('v2')
    expect(await b3sumFile(out())).toBe(v2Sum)
  })

  it('a man in the middle replaying v1 as latest: refused, clear message, non-zero exit, v2 stays', async () => {
    const mitm = await replayV1()
    try {
      const r = await runAgent(args(mitm.url, data(), out()))
      expect(r.code).not.toBe(0)
      expect(r.stderr).toMatch(/latest version of ws is v1 .*older than v2.*refusing to move back.*ws@v1/)
      expect(r.stderr).not.toMatch(/\n\s+at /) // no stack trace
      expect(await b3sumFile(out())).toBe(v2Sum)
      refused++
    } finally {
      await mitm.close()
    }
  })

  it('a forged pointer (v1 with a higher sequence, signed by another key) is refused; v2 stays', async () => {
    const other = generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' })
    const key = await crypto.subtle.importKey('pkcs8', other, { name: 'Ed25519' }, false, ['sign'])
    const forged = await signVersionPointer({ ...decodeVersionPointer(v1Pointer).pointer, seq: 1_000_000 }, key)
    const mitm = await startTamperingProxy(coord.url, (path, body) => path.endsWith('/latest') ? forged : path.endsWith('/versions/latest/info') ? v1Info : body)
    try {
      const r = await runAgent(args(mitm.url, data(), out()))
      expect(r.code).not.toBe(0)
      expect(r.stderr).toMatch(/version pointer signature does not verify/)
      expect(await b3sumFile(out())).toBe(v2Sum)
      refused++
    } finally {
      await mitm.close()
    }
  })

  it('the daemon (agent run) refuses the same replay and keeps v2', async () => {
    const mitm = await replayV1()
    try {
      const config = join(tmp.path, 'agent.json')
      await writeFile(config, JSON.stringify({ coordinator: mitm.url, tokenFile: coord.tokenFile, dataDir: data(), images: { ws: out() }, indexFolders: [], pollSeconds: 0.3, lanSharing: false }))
      const { child, done } = spawnAgent(['run', '--config', config])
      let stderr = ''
      child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
      const until = Date.now() + 20_000
      while (!/refusing to move back/.test(stderr) && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 100))
      child.kill('SIGTERM')
      await done
      expect(stderr).toMatch(/refusing to move back/)
      expect(await b3sumFile(out())).toBe(v2Sum)
      refused++
    } finally {
      await mitm.close()
    }
  })

  it('naming the version (ws@v1) still installs v1, even through the same proxy', async () => {
    const mitm = await replayV1()
    try {
      const r = await runAgent(args(mitm.url, data(), out(), 'ws@v1'))
      expect(r.code, r.stderr).toBe(0)
      expect(await b3sumFile(out())).toBe(v1Sum)
      // and back to latest: v2 is newer than anything seen, so it is followed
      const back = await runAgent(args(coord.url, data(), out()))
      expect(back.code, back.stderr).toBe(0)
      expect(await b3sumFile(out())).toBe(v2Sum)
    } finally {
      await mitm.close()
    }
  })

  it('an agent that installed v2 by name (ws@v2, nothing seen before) is not moved back by the replay either', async () => {
    const named = join(tmp.path, 'named-data')
    const namedOut = join(tmp.path, 'named', 'ws.img')
    const first = await runAgent(args(coord.url, named, namedOut, 'ws@v2'))
    expect(first.code, first.stderr).toBe(0)
    const mitm = await replayV1()
    try {
      const r = await runAgent(args(mitm.url, named, namedOut))
      expect(r.code).not.toBe(0)
      expect(r.stderr).toMatch(/refusing to move back/)
      expect(await b3sumFile(namedOut)).toBe(v2Sum)
      refused++
    } finally {
      await mitm.close()
    }
  })

  it('a retired version is never latest: the signed pointer names the newest version not retired', async () => {
    const res = await fetch(`${coord.url}/v1/images/ws/versions/v2/retire`, { method: 'POST', headers: { authorization: `Bearer ${coord.coordinator.adminToken}` } })
    expect(res.status).toBe(200)
    const p = decodeVersionPointer(await get('/v1/images/ws/latest')).pointer
    expect(p.version).toBe('v1')
    // an agent on v2 that saw v2 as latest does not follow the rollback on its own
    const r = await runAgent(args(coord.url, data(), out()))
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/refusing to move back/)
    expect(await b3sumFile(out())).toBe(v2Sum)
    refused++
    // a fresh agent takes v1, the only current version
    const fresh = await runAgent(args(coord.url, join(tmp.path, 'fresh-data'), join(tmp.path, 'fresh', 'ws.img')))
    expect(fresh.code, fresh.stderr).toBe(0)
    expect(await b3sumFile(join(tmp.path, 'fresh', 'ws.img'))).toBe(v1Sum)
    expect(JSON.parse(await readFile(join(tmp.path, 'fresh-data', 'manifests', 'ws', 'latest-seen.json'), 'utf8')).version).toBe('v1')
  })
})
