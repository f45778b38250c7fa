/**
 * The image service's read caches (version records and signed envelopes, see
 * coordinator/image-service.ts): `latest` and the served bytes follow every
 * publish and retirement at once, including while a crowd of requests is in
 * flight, and a cached envelope is the exact signed version it names.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { api } from '../../protocol/index.ts'
import { importPublicKey, openSignedManifest } from '../../protocol/signed-manifest.ts'
import { decodeManifest } from '../../protocol/manifest.ts'
import { createPublishClient } from '../../client/publish-client.ts'
import { createLruCache } from '../../coordinator/lru-cache.ts'
import { makeTestImage, tempDir, type TempDir, type TestImage } from '../helpers/images.ts'
import { startImageHarness, type ImageHarness } from './image-harness.ts'

describe('createLruCache', () => {
  it('keeps at most maxEntries, dropping the least recently used', () => {
    const c = createLruCache<string>({ maxEntries: 2 })
    c.set('a', 'A')
    c.set('b', 'B')
    expect(c.get('a')).toBe('A') // a is now the most recent
    c.set('c', 'C')
    expect(c.get('b')).toBeUndefined()
    expect(c.get('a')).toBe('A')
    expect(c.get('c')).toBe('C')
    expect(c.size).toBe(2)
  })

  it('keeps at most maxWeight, never a single value heavier than it, and counts replacements once', () => {
    const c = createLruCache<Uint8Array>({ maxEntries: 100, maxWeight: 10, weigh: b => b.length })
    c.set('a', new Uint8Array(4))
    c.set('b', new Uint8Array(4))
    c.set('a', new Uint8Array(3)) // replaces: weight 7, a most recent
    expect(c.weight).toBe(7)
    c.set('c', new Uint8Array(5)) // 12 > 10: b (least recent) goes
    expect(c.get('b')).toBeUndefined()
    expect(c.weight).toBe(8)
    c.set('big', new Uint8Array(11))
    expect(c.get('big')).toBeUndefined()
    expect(c.weight).toBe(8)
    c.delete('a')
    expect(c.weight).toBe(5)
    c.clear()
    expect(c.size).toBe(0)
    expect(c.weight).toBe(0)
  })
})

describe('image service read caches', () => {
  let dir: TempDir
  let h: ImageHarness
  let img: TestImage
  let key: CryptoKey

  beforeAll(async () => {
    dir = await tempDir()
    img = await makeTestImage(dir.path, { name: 'v', sizeMiB: 4, seed: 31 })
    h = await startImageHarness(join(dir.path, 'coord'), { buildDeltaPacks: false })
    const k = api.KeyResponse.parse(await (await fetch(h.url + api.routes.key)).json())
    key = await importPublicKey(new Uint8Array(Buffer.from(k.publicKey, 'base64')))
  })

  afterAll(async () => {
    await h?.close()
    await dir?.cleanup()
  })

  const publish = async (version: string): Promise<api.VersionInfo> =>
    (await createPublishClient({ coordinator: h.url, token: h.tokens.admin }).publish(img.path, { image: 'desk', version })).info

  /** GET .../versions/latest: the version it names and the version inside the signed bytes (checked against the key). */
  const latest = async (): Promise<{ status: number, header: string | null, signed?: string, etag: string | null }> => {
    const r = await h.fetch(api.routes.version('desk', 'latest'), h.tokens.desk)
    if (r.status !== 200) { await r.body?.cancel(); return { status: r.status, header: null, etag: null } }
    const opened = await openSignedManifest(new Uint8Array(await r.arrayBuffer()), key)
    return { status: r.status, header: r.headers.get('x-trimswarm-version'), signed: opened.manifest.version, etag: r.headers.get('etag') }
  }

  it('`latest` moves with the very next request after each publish and retirement, and the bytes match', async () => {
    const i1 = await publish('1')
    for (let i = 0; i < 3; i++) expect(await latest()).toEqual({ status: 200, header: '1', signed: '1', etag: `"${i1.manifestCid}"` })
    const i2 = await publish('2')
    expect(await latest()).toEqual({ status: 200, header: '2', signed: '2', etag: `"${i2.manifestCid}"` })
    expect((await h.fetch(api.routes.versionInfo('desk', 'latest'), h.tokens.desk).then(async r => await r.json())).version).toBe('2')

    const retired = await (await h.fetch(api.routes.retire('desk', '2'), h.tokens.admin, { method: 'POST' })).json()
    expect(retired.retired).toBe(true)
    expect(await latest()).toEqual({ status: 200, header: '1', signed: '1', etag: `"${i1.manifestCid}"` })
    // retired, still fetchable by name, and its info says so
    const by2 = await h.fetch(api.routes.version('desk', '2'), h.tokens.desk)
    expect(decodeManifest((await openSignedManifest(new Uint8Array(await by2.arrayBuffer()), key)).manifestBytes).version).toBe('2')
    expect((await h.images.getInfo('desk', '2')).retired).toBe(true)
    const list = await (await h.fetch(api.routes.versions('desk'), h.tokens.desk)).json()
    expect(list.latest).toBe('1')
    expect(list.versions.map((v: api.VersionInfo) => [v.version, v.retired])).toEqual([['1', false], ['2', true]])

    // a new version after a retired one: its previous is the last current version
    const i3 = await publish('3')
    expect(i3.previous).toBe('1')
    expect(await latest()).toEqual({ status: 200, header: '3', signed: '3', etag: `"${i3.manifestCid}"` })

    for (const v of ['1', '3']) await h.fetch(api.routes.retire('desk', v), h.tokens.admin, { method: 'POST' })
    expect((await latest()).status).toBe(404)
    const i4 = await publish('4')
    expect(i4.previous).toBeNull()
    expect(await latest()).toEqual({ status: 200, header: '4', signed: '4', etag: `"${i4.manifestCid}"` })
  })

  it('under a crowd of concurrent requests, every request that starts after a publish returns sees the new version', async () => {
    for (let round = 5; round < 9; round++) {
      const version = String(round)
      let published = false
      const stale: string[] = []
      const crowd = Array.from({ length: 40 }, async () => {
        while (!published) await latest()
        // the first request of each client after the commit returned
        const r = await latest()
        if (r.signed !== version || r.header !== version) stale.push(`${r.status} ${r.header ?? ''}/${r.signed ?? ''}`)
      })
      await publish(version)
      published = true
      await Promise.all(crowd)
      expect(stale).toEqual([])
    }
  })
})
