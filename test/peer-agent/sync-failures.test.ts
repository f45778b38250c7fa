/**
 * Bad input and interruptions, end to end against a real coordinator: kill -9
 * and resume, tampered manifest, wrong pinned key, corrupt host files,
 * unreachable coordinator, vanished index folder, events queued while the
 * coordinator is down.
 */
import { createServer } from 'node:net'
import { mkdir, open, readFile, readdir, stat, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { b3sumFile, makeHostFolder, seededBytes, type HostFolder, type TempDir, type TestImage } from '../helpers/images.ts'
import { createCoordinatorClient } from '../../peer-agent/coordinator-client.ts'
import { createEventQueue } from '../../peer-agent/event-queue.ts'
import { silentLogger } from '../../peer-agent/interface.ts'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { publishZeroVersion } from '../helpers/zero-version.ts'
import { startByteMeter } from '../../bench/lib/byte-meter.ts'
import { reencodeSameSize, runAgent, spawnAgent, startPublishedTestImage, startTamperingProxy, type TestCoordinator } from './harness.ts'

let tmp: TempDir
let coord: TestCoordinator
let img: TestImage
let host: HostFolder
let imgSum: string

beforeAll(async () => {
  // segments of 64 blocks, so a kill mid-transfer finds some segments' blocks in the partial file (the image's
  // ~460 blocks would be one default segment, decoded once all of it is in; agent-kill.test.ts kills mid-segment)
  ;({ tmp, img, imgSum, coord } = await startPublishedTestImage('trimswarm-agent-bad-', { name: 'img', sizeMiB: 8, seed: 21 }, { segments: { segmentBlocks: 64 } }))
  host = await makeHostFolder(tmp.path, img)
})

afterAll(async () => {
  await coord?.stop()
  await tmp?.cleanup()
})

function args (url: string, data: string, out: string): string[] {
  return ['sync', 'ws@v1', '--coordinator', url, '--token-file', coord.tokenFile, '--data', data, '--out', out, '--json', '--retries', '2', '--retry-delay', '50']
}

async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as { port: number }).port
  await new Promise(resolve => s.close(resolve))
  return port
}

describe('agent sync, interrupted and attacked', () => {
  it('resumes after kill -9 without fetching verified data again', async () => {
    // a clean run through a byte meter: the reference
    const clean = await startByteMeter(coord.url)
    const r0 = await runAgent([...args(clean.url, join(tmp.path, 'k0'), join(tmp.path, 'k0-out', 'ws.img')), '--no-index'])
    expect(r0.code, r0.stderr).toBe(0)
    const cleanBytes = clean.bytes
    await clean.close()

    // the same sync, slowed down, killed mid-transfer, then restarted
    // a slow link (about 4 s for the whole transfer) so the kill lands mid-stream
    const meter = await startByteMeter(coord.url, { rate: Math.max(20_000, Math.round(cleanBytes / 4)) })
    const data = join(tmp.path, 'k1')
    const out = join(tmp.path, 'k1-out', 'ws.img')
    const { child, done } = spawnAgent([...args(meter.url, data, out), '--no-index'])
    const deadline = Date.now() + 20_000
    while (meter.bytes < cleanBytes * 0.5 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
    child.kill('SIGKILL')
    const killed = await done
    expect(killed.signal).toBe('SIGKILL')
    expect(await stat(out).catch(() => null)).toBeNull() // nothing at the output yet
    const bytesBeforeRestart = meter.bytes
    expect(bytesBeforeRestart).toBeLessThan(cleanBytes)

    const r = await runAgent([...args(meter.url, data, out), '--no-index'])
    expect(r.code, r.stderr).toBe(0)
    expect(await b3sumFile(out)).toBe(imgSum)
    expect(r.summary.bytes.local).toBeGreaterThan(0) // blocks of the killed run, re-verified from the partial file
    // both runs together: not much more than one clean run (manifest and login twice, a new stream's start)
    expect(meter.bytes).toBeLessThan(cleanBytes * 1.1 + 32 * 1024)
    await meter.close()
  })

  it('refuses a tampered manifest: nothing written, the old file intact', async () => {
    const proxy = await startTamperingProxy(coord.url, (path, body) => {
      if (/\/versions\/v1$/.test(path.split('?')[0])) {
        const b = body.slice()
        b[Math.floor(b.length / 2)] ^= 0x01 // one flipped bit in the signed bytes
        return b
      }
      return body
    })
    const data = join(tmp.path, 't1')
    const outDir = join(tmp.path, 't1-out')
    const out = join(outDir, 'ws.img')
    await writeFile(join(tmp.path, 'placeholder'), '')
    await (await import('node:fs/promises')).mkdir(outDir, { recursive: true })
    await writeFile(out, 'the old image\n')
    // --force: the placeholder is not this agent's; what must refuse the sync here is the manifest
    const r = await runAgent([...args(proxy.url, data, out), '--no-index', '--force'])
    await proxy.close()
    expect(r.code, r.stderr).toBe(6)
    expect(r.stderr).toMatch(/signature|manifest/i)
    expect(r.stderr).not.toMatch(/\n\s+at /) // no stack trace
    expect(await readFile(out, 'utf8')).toBe('the old image\n')
    expect(await readdir(outDir)).toEqual(['ws.img'])
  })

  it('discards a bad block from the origin, fetches its chunk whole, and counts it', async () => {
    const { zstdCompressSync, zstdDecompressSync } = await import('node:zlib')
    // the first segment and the first batch are tampered: the segment's bad block is asked again in a
    // batch, that batch's bad block makes the agent fetch its chunk whole; exactly two blocks are bad
    const tampered = new Set<string>()
    const proxy = await startTamperingProxy(coord.url, (path, body) => {
      const kind = path.endsWith('/blocks') ? 'batch' : /\/segments\/\d+$/.test(path) ? 'segment' : undefined
      if (kind == null || tampered.has(kind)) return body
      tampered.add(kind)
      // one flipped byte in the segment's sixth block; a segment keeps the size its table lists
      if (kind === 'segment') return reencodeSameSize(body, (raw) => { raw[5 * 4096 + 100] ^= 0xff })
      // the batch that asks again for it holds that one block: flip its first
      const blocks = new Uint8Array(zstdDecompressSync(body))
      blocks[100] ^= 0xff
      return new Uint8Array(zstdCompressSync(blocks))
    })
    const data = join(tmp.path, 'b1')
    const out = join(tmp.path, 'b1-out', 'ws.img')
    // --no-lan: one block batch for the whole image (with LAN sharing the origin part comes in claim rounds, each tampered)
    const r = await runAgent([...args(proxy.url, data, out), '--no-index', '--no-lan'])
    await proxy.close()
    expect(r.code, r.stderr).toBe(0)
    expect(r.summary.discardedBlocks).toBe(2)
    expect(r.summary.chunksFetched).toBeGreaterThanOrEqual(1)
    expect(await b3sumFile(out)).toBe(imgSum)
  })

  it('refuses a manifest signed by another key than the pinned one', async () => {
    const data = join(tmp.path, 't2')
    const out = join(tmp.path, 't2-out', 'ws.img')
    const wrongKey = Buffer.from(seededBytes(99, 32)).toString('base64')
    const { mkdir } = await import('node:fs/promises')
    await mkdir(data, { recursive: true })
    await writeFile(join(data, 'coordinator-key.json'), JSON.stringify({ url: coord.url, publicKey: wrongKey }))
    const r = await runAgent([...args(coord.url, data, out), '--no-index'])
    expect(r.code).toBe(6)
    expect(r.stderr).toMatch(/does not verify|signature/i)
    expect(await stat(out).catch(() => null)).toBeNull()
  })

  it('does not use a host block that changed since indexing, and still writes the right image', async () => {
    const data = join(tmp.path, 'c1')
    const out = join(tmp.path, 'c1-out', 'ws.img')
    // whole-second mtimes, so they can be restored exactly after the change below
    const when = new Date('2026-01-02T03:04:05Z')
    for (const { hostPath } of host.shared) await utimes(join(host.path, hostPath), when, when)
    const ix = await runAgent(['index', '--data', data, '--index', host.path, '--json'])
    expect(ix.code, ix.stderr).toBe(0)
    // change every shared host file in place, keeping size and mtime: the index cannot notice
    for (const { hostPath } of host.shared) {
      const p = join(host.path, hostPath)
      const st = await stat(p)
      const fh = await open(p, 'r+')
      await fh.write(seededBytes(7, Math.min(4096, st.size)), 0, Math.min(4096, st.size), 0)
      await fh.close()
      await utimes(p, when, when)
    }
    const r = await runAgent([...args(coord.url, data, out), '--index', host.path])
    expect(r.code, r.stderr).toBe(0)
    expect(r.summary.discardedBlocks).toBeGreaterThan(0)
    expect(r.summary.bytes.local).toBeGreaterThan(0) // the unchanged blocks still count
    expect(await b3sumFile(out)).toBe(imgSum)
  })

  it('warns about a vanished index folder and syncs anyway', async () => {
    const data = join(tmp.path, 'v1')
    const out = join(tmp.path, 'v1-out', 'ws.img')
    const r = await runAgent([...args(coord.url, data, out), '--index', join(tmp.path, 'no-such-folder')])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/warning: .*no-such-folder/)
    expect(await b3sumFile(out)).toBe(imgSum)
  })

  it('a coordinator that never answered: a clear error at once, without retries (they are for one that went away)', async () => {
    const port = await freePort()
    const r = await runAgent([...args(`http://127.0.0.1:${port}`, join(tmp.path, 'u1'), join(tmp.path, 'u1-out', 'ws.img')), '--no-index', '--retries', '3', '--retry-delay', '100'])
    expect(r.code).toBe(5)
    expect(r.stderr).toMatch(/cannot reach the coordinator at .*ECONNREFUSED/)
    expect(r.stderr).not.toMatch(/retrying in/)
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })

  it('queues events while the coordinator is down and delivers them later, once', async () => {
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const dir = join(tmp.path, 'ev')
    const c2 = createCoordinator({ dataDir: join(dir, 'coordinator'), listen: `127.0.0.1:${port}`, logLevel: 'error' })
    const admin = async (method: string, path: string, body?: unknown): Promise<any> => {
      const res = await fetch(url + path, { method, headers: { authorization: `Bearer ${c2.adminToken}`, 'content-type': 'application/json' }, body: body == null ? undefined : JSON.stringify(body) })
      return await res.json()
    }
    // a token from this coordinator, then the coordinator goes down
    await c2.start()
    // the coordinator takes events only for versions that exist (docs/SECURITY.md, forged events)
    await mkdir(dir, { recursive: true })
    await publishZeroVersion(c2.images, dir, 'ws', 'v1')
    await admin('PUT', '/v1/policies/branch', { images: ['*'], wanLimitBps: 0, lanSharing: true, lanUploadBps: 0, maxPeers: 8, updateWindow: null, indexFolders: {} })
    const token = (await admin('POST', '/v1/tokens', { group: 'branch' })).token as string
    await c2.stop()

    const client = createCoordinatorClient({ logger: silentLogger }, { url, auth: { token }, retry: { attempts: 2, baseMs: 10 } })
    const queue = createEventQueue({ client, logger: silentLogger }, { path: join(dir, 'events.jsonl'), agent: 'agent-1', site: 'hq' })
    const e1 = await queue.record({ type: 'sync.started', image: 'ws', version: 'v1' })
    const e2 = await queue.record({ type: 'sync.completed', image: 'ws', version: 'v1', bytes: { local: 1, peers: 0, origin: 2 }, seconds: 1.5 })
    expect(await queue.flush()).toBe(0) // coordinator down: kept on disk
    expect((await queue.pending()).map(e => e.id)).toEqual([e1.id, e2.id])

    await c2.start()
    try {
      expect(await queue.flush()).toBe(2)
      expect(await queue.pending()).toEqual([])
      expect(await queue.flush()).toBe(0)
      const listed = JSON.stringify(await admin('GET', '/v1/events'))
      expect(listed).toContain(e1.id)
      expect(listed).toContain(e2.id)
      // re-sending the same events (a lost response) counts them once
      const again = await client.json('POST', '/v1/events', { parse: (v: unknown) => v as { accepted: number, duplicates: number }, json: {} }, { events: [e1, e2] })
      expect(again).toEqual({ accepted: 0, duplicates: 2 })
    } finally {
      await c2.stop()
    }
  })
})
