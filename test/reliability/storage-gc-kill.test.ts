/**
 * Promise: `kill -9` of the coordinator process in the middle of a storage gc
 * leaves a consistent store: after a restart every live version is whole
 * (`coordinator fsck` passes), and `trimswarm image gc` run again deletes
 * exactly what the interrupted run had left, ending with the chunks of the
 * live version only. Drives the real CLI (`image retire`, `image gc`,
 * `image list`) against the real coordinator process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { api } from '../../protocol/index.ts'
import { chunkCid, toHex } from '../../protocol/block-id.ts'
import { openSignedManifest, importPublicKey } from '../../protocol/signed-manifest.ts'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { chunkCidOf } from '../../chunker/blake3.ts'
import { ADMIN_TOKEN_FILE, BLOCKS_DIR } from '../../coordinator/constants.ts'
import { createPublishClient } from '../../client/publish-client.ts'
import { makeTestImage, makeUpdatedImage, seededBytes, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { freePort } from '../helpers/slapd.ts'
import { cli, startCoordinatorProcess } from '../helpers/cli-process.ts'

/** Unused chunks uploaded so the interrupted run has plenty to delete. */
const EXTRA_CHUNKS = 1500

async function storedHex (dataDir: string): Promise<Set<string>> {
  const out = new Set<string>()
  const root = join(dataDir, BLOCKS_DIR)
  for (const a of await readdir(root)) for (const b of await readdir(join(root, a))) for (const f of await readdir(join(root, a, b))) out.add(f)
  return out
}

let tmp: TempDir
let imgs: TestImage[]

beforeAll(async () => {
  tmp = await tempDir('trimswarm-gc-kill-')
  const a = await makeTestImage(tmp.path, { name: 'a', sizeMiB: 8, seed: 71 })
  imgs = [a, await makeUpdatedImage(tmp.path, a, { name: 'b', seed: 72 })]
})
afterAll(async () => { await tmp?.cleanup() })

describe('kill -9 during storage gc', () => {
  it('leaves every live version whole; the next `image gc` finishes the job', async () => {
    const dataDir = join(tmp.path, 'coord')
    const config = join(tmp.path, 'coordinator.json')
    // exact chunk counts: without segments and delta packs (their objects are no chunk of any manifest)
    await writeFile(config, JSON.stringify({ segments: { build: false }, images: { buildDeltaPacks: false }, storageGc: { intervalSeconds: 0, graceSeconds: 0 } }))
    let proc = await startCoordinatorProcess(dataDir, await freePort(), ['--config', config])
    const tokenFile = join(dataDir, ADMIN_TOKEN_FILE)
    const client = (url: string): string[] => ['--coordinator', url, '--token-file', tokenFile]
    try {
      const token = (await readFile(tokenFile, 'utf8')).trim()
      for (const [i, img] of imgs.entries()) await createPublishClient({ coordinator: proc.url, token }).publish(img.path, { image: 'desk', version: String(i + 1) })
      // the live version's chunks, read from its signed manifest
      const key = await importPublicKey(new Uint8Array(Buffer.from(api.KeyResponse.parse(await (await fetch(proc.url + api.routes.key)).json()).publicKey, 'base64')))
      const env = await fetch(proc.url + api.routes.version('desk', '2'), { headers: { authorization: `Bearer ${token}` } })
      const live = new Set((await openSignedManifest(new Uint8Array(await env.arrayBuffer()), key)).manifest.chunks.map(c => toHex(c.digest)))
      // unused chunks (as an abandoned publish leaves), uploaded in parallel
      const extra = Array.from({ length: EXTRA_CHUNKS }, (_, i) => seededBytes(10_000 + i, BLOCK_SIZE))
      for (let i = 0; i < extra.length; i += 50) {
        await Promise.all(extra.slice(i, i + 50).map(async bytes => {
          const r = await fetch(proc.url + api.routes.chunkUpload(chunkCidOf(bytes).toString()), { method: 'PUT', body: bytes as Uint8Array<ArrayBuffer>, headers: { authorization: `Bearer ${token}` } })
          expect(r.status).toBe(204)
        }))
      }

      const retired = await cli(['image', 'retire', 'desk', '1', ...client(proc.url)])
      expect(retired).toMatchObject({ code: 0, stdout: 'retired desk version 1; `trimswarm image gc` frees its unshared chunks\n' })
      const before = await storedHex(dataDir)
      expect(before.size).toBeGreaterThan(live.size + EXTRA_CHUNKS)

      // start a gc and kill the coordinator as soon as it has deleted something
      const pending = fetch(proc.url + api.routes.gc, { method: 'POST', body: '{"dryRun":false}', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }).catch(() => undefined)
      let atKill = before.size
      for (let i = 0; i < 4000 && atKill === before.size; i++) {
        await new Promise(resolve => setTimeout(resolve, 2))
        atKill = (await storedHex(dataDir)).size
      }
      proc.child.kill('SIGKILL')
      await proc.exited
      await pending
      const afterKill = await storedHex(dataDir)
      // killed mid-run: some deleted, not all, and no live chunk among the deleted
      expect(afterKill.size).toBeLessThan(before.size)
      expect(afterKill.size).toBeGreaterThan(live.size)
      for (const hex of live) expect(afterKill.has(hex)).toBe(true)

      // restart: the run again finishes the job and says what it freed
      proc = await startCoordinatorProcess(dataDir, await freePort(), ['--config', config])
      const gc = await cli(['image', 'gc', '--json', ...client(proc.url)])
      expect(gc.code).toBe(0)
      const report = JSON.parse(gc.stdout)
      expect(report.chunks).toMatchObject({ deleted: afterKill.size - live.size, live: live.size, kept: 0 })
      expect(report.chunks.deletedBytes).toBeGreaterThan(0)
      expect(await storedHex(dataDir)).toEqual(live)
      const text = await cli(['image', 'gc', ...client(proc.url)])
      expect(text.stdout).toMatch(/^freed 0 B: 0 chunks \(0 B\) and 0 delta packs \(0 B\); collected 0 retired versions; kept \d+ live chunks and 0 unused chunks/)
      const list = await cli(['image', 'list', '--json', ...client(proc.url)])
      expect(JSON.parse(list.stdout)[0].versions.map((v: { version: string, state: string }) => `${v.version}:${v.state}`)).toEqual(['1:collected', '2:live'])
      const table = await cli(['image', 'list', ...client(proc.url)])
      expect(table.stdout.split('\n')[0]).toMatch(/^IMAGE\s+VERSION\s+STATE\s+SIZE\s+DATA\s+CHUNKS\s+DELTA PACK\s+PUBLISHED$/)
      expect(table.stdout).toMatch(/desk\s+2\s+live, latest\s+8\.0 MiB/)
      // and the live version syncs chunk by chunk
      for (const hex of live) {
        const r = await fetch(proc.url + api.routes.chunk('desk', '2', chunkCid(new Uint8Array(Buffer.from(hex, 'hex'))).toString()), { headers: { authorization: `Bearer ${token}` } })
        expect(r.status).toBe(200)
        await r.arrayBuffer()
      }
    } finally {
      proc.child.kill('SIGKILL')
      await proc.exited
    }
    const fsck = await cli(['coordinator', 'fsck', '--data', dataDir, '--json'])
    expect(fsck.code).toBe(0)
    expect(JSON.parse(fsck.stdout)).toMatchObject({ ok: true, incompleteVersions: 0 })
  })
})
