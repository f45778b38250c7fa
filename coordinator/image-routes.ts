/**
 * HTTP routes of images, versions and the origin (docs/PROTOCOL.md "Images,
 * origin and delta packs"). Mounted at the app root after the auth middleware:
 * every route reads `c.get('principal')` and checks policy before it looks at
 * anything stored, so a caller without the image learns nothing (403 even for
 * an image that does not exist).
 */
import { createReadStream } from 'node:fs'
import { Hono, type Context } from 'hono'
import { api } from '../protocol/index.ts'
import { parseChunkCid } from '../protocol/block-id.ts'
import { BLOCK_STREAM_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, MAX_CHUNK_BLOCKS, BLOCK_SIZE, MAX_MANIFEST_BYTES } from '../protocol/constants.ts'
import { DELTA_PACK_MEDIA_TYPE } from '../protocol/delta-pack.ts'
import { PACE_ROUTE, PaceUpdate, type PaceUpdateResponse } from '../protocol/pace.ts'
import { VERSION_POINTER_MEDIA_TYPE } from '../protocol/version-pointer.ts'
import { assertAdmin, assertImageAccess, canAccessImage } from './access.ts'
import type { Audit } from './audit.ts'
import { MAX_BLOCK_BATCH_REQUEST_BYTES, MAX_MISSING_REQUEST_BYTES } from './constants.ts'
import { parseRangeHeader } from './http-range.ts'
import { createPaceRegistry, pacedBody, requestPace, type Pace } from './pace.ts'
import type { ImageService } from './image-service.ts'
import type { CoordinatorEnv } from './interface.ts'
import { nameParam, readBody, readJson } from './request-body.ts'
import { toWebStream } from './web-stream.ts'

/** Immutable responses (an exact version's manifest, a chunk) may be cached by the client; `latest` may not. */
function cacheHeader (version: string): string {
  return version === 'latest' ? 'no-cache' : 'private, max-age=31536000, immutable'
}

/** The image routes, to mount after the auth middleware. */
export function createImageRoutes (images: ImageService, audit: Audit): Hono<CoordinatorEnv> {
  const app = new Hono<CoordinatorEnv>()
  // sender-side pacing of origin streams (background mode; coordinator/pace.ts)
  const paces = createPaceRegistry()
  const paceOf = (c: Context<CoordinatorEnv>): Pace | undefined => {
    const p = c.get('principal')
    return requestPace(paces, `${p.kind}:${p.user}`, name => c.req.header(name))
  }

  // ---- upload (admin) ----
  app.post(api.routes.chunksMissing, async (c) => {
    assertAdmin(c.get('principal'))
    const req = await readJson(c, api.MissingChunksRequest, MAX_MISSING_REQUEST_BYTES)
    const cids = req.cids.map(text => parseChunkCid(text))
    const missing = await images.missingChunks(cids, { signal: c.req.raw.signal })
    return c.json({ missing: missing.map(cid => cid.toString()) } satisfies api.MissingChunksResponse)
  })

  app.put('/v1/chunks/:cid', async (c) => {
    assertAdmin(c.get('principal'))
    const cid = parseChunkCid(c.req.param('cid'))
    const bytes = await readBody(c, MAX_CHUNK_BLOCKS * BLOCK_SIZE)
    await images.putChunk(cid, bytes, { signal: c.req.raw.signal })
    return c.body(null, 204)
  })

  // ---- versions ----
  app.post('/v1/images/:name/versions', async (c) => {
    assertAdmin(c.get('principal'))
    const image = nameParam(c.req.param('name'), 'name')
    const bytes = await readBody(c, MAX_MANIFEST_BYTES)
    const info = await images.commitVersion(image, bytes, { signal: c.req.raw.signal })
    audit(c, 'version.publish', { target: { image, version: info.version }, before: null, after: info })
    return c.json(info satisfies api.VersionInfo, 201)
  })

  app.get(api.routes.images, async (c) => {
    const principal = c.get('principal')
    return c.json(await images.listImages(image => canAccessImage(principal, image)) satisfies api.ImageList)
  })

  app.get('/v1/images/:name/versions', async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    return c.json(await images.listVersions(image) satisfies api.VersionList)
  })

  app.get('/v1/images/:name/versions/:version', async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    const version = nameParam(c.req.param('version'), 'version')
    const { info, bytes } = await images.getEnvelope(image, version)
    const etag = `"${info.manifestCid}"`
    const headers = { 'Content-Type': MANIFEST_MEDIA_TYPE, ETag: etag, 'Cache-Control': cacheHeader(version), 'X-Trimswarm-Version': info.version }
    if (c.req.header('if-none-match') === etag) return c.body(null, 304, headers)
    images.countServed('manifest', bytes.length)
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, headers)
  })

  app.get('/v1/images/:name/versions/:version/info', async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    return c.json(await images.getInfo(image, nameParam(c.req.param('version'), 'version')) satisfies api.VersionInfo)
  })

  app.get('/v1/images/:name/latest', async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    const { info, bytes } = await images.getLatestPointer(image)
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, { 'Content-Type': VERSION_POINTER_MEDIA_TYPE, 'Cache-Control': 'no-cache', 'X-Trimswarm-Version': info.version })
  })

  app.post('/v1/images/:name/versions/:version/retire', async (c) => {
    assertAdmin(c.get('principal'))
    const image = nameParam(c.req.param('name'), 'name')
    const version = nameParam(c.req.param('version'), 'version')
    // retire() refuses "latest": let it say so before anything is looked up
    const before = version === 'latest' ? undefined : await images.getInfo(image, version)
    const after = await images.retire(image, version)
    audit(c, 'version.retire', { target: { image, version }, before: { retired: before?.retired }, after: { retired: after.retired } })
    return c.json(after satisfies api.VersionInfo)
  })

  // ---- origin ----
  app.post('/v1/images/:name/versions/:version/blocks', async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    const version = nameParam(c.req.param('version'), 'version')
    const req = await readJson(c, api.BlockBatchRequest, MAX_BLOCK_BATCH_REQUEST_BYTES)
    const ranges = req.ranges as Array<[number, number]>
    const principal = c.get('principal')
    const pace = paceOf(c)
    const { info, stream } = await images.openBlockBatch(image, version, ranges, {
      signal: c.req.raw.signal,
      owner: { principal: `${principal.kind}:${principal.user}`, groups: principal.groups },
      // a stalled client's socket is full: end the connection, the stream is already released
      onStall: () => { (c.env as { outgoing?: { destroy: () => void } } | undefined)?.outgoing?.destroy() }
    })
    const out = pacedBody(stream, pace)
    return new Response(out.body as BodyInit, { status: 200, headers: { 'Content-Type': BLOCK_STREAM_MEDIA_TYPE, 'X-Trimswarm-Version': info.version, 'Cache-Control': 'no-store', ...out.headers } })
  })

  app.get('/v1/images/:name/versions/:version/chunks/:cid', async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    const version = nameParam(c.req.param('version'), 'version')
    const cid = parseChunkCid(c.req.param('cid'))
    const pace = paceOf(c)
    const bytes = await images.getChunk(image, version, cid, { signal: c.req.raw.signal })
    images.countServed('chunk', bytes.length)
    const headers = { 'Content-Type': 'application/octet-stream', ETag: `"${cid.toString()}"`, 'Cache-Control': 'private, max-age=31536000, immutable' }
    if (pace == null) return c.body(bytes as Uint8Array<ArrayBuffer>, 200, headers)
    const out = pacedBody(bytes, pace)
    return new Response(out.body as BodyInit, { status: 200, headers: { ...headers, 'Content-Length': String(bytes.length), ...out.headers } })
  })

  app.get('/v1/images/:name/versions/:version/delta/:from', async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    const pace = paceOf(c)
    const pack = await images.getDeltaPack(image, nameParam(c.req.param('version'), 'version'), nameParam(c.req.param('from'), 'from'))
    const etag = `"${pack.etag}"`
    const base: Record<string, string> = { 'Content-Type': DELTA_PACK_MEDIA_TYPE, ETag: etag, 'Accept-Ranges': 'bytes', 'Cache-Control': 'private, max-age=31536000, immutable' }
    if (c.req.header('if-none-match') === etag) return c.body(null, 304, base)
    // If-Range: resume only when the client's copy is of this very file, else send it whole.
    const ifRange = c.req.header('if-range')
    const range = ifRange == null || ifRange === etag ? parseRangeHeader(c.req.header('range'), pack.bytes) : undefined
    if (range === 'unsatisfiable') {
      return c.body(null, 416, { ...base, 'Content-Range': `bytes */${pack.bytes}` })
    }
    const start = range?.start ?? 0
    const end = range?.end ?? pack.bytes - 1 // inclusive
    const length = end - start + 1
    const headers: Record<string, string> = { ...base, 'Content-Length': String(length) }
    if (range != null) headers['Content-Range'] = `bytes ${start}-${end}/${pack.bytes}`
    if (c.req.method === 'HEAD' || length === 0) return c.body(null, range != null ? 206 : 200, headers)
    const file = createReadStream(pack.path, { start, end })
    const body = pacedBody(toWebStream(file, { onBytes: (n) => { images.countServed('delta', n) }, onCancel: () => file.destroy() }), pace)
    return new Response(body.body as BodyInit, { status: range != null ? 206 : 200, headers: { ...headers, ...body.headers } })
  })

  // a pace session's new rate (clamped): the agent's background controller, every probe
  app.post(PACE_ROUTE, async (c) => {
    const req = await readJson(c, PaceUpdate, 1024)
    const p = c.get('principal')
    const pace = paces.pace(`${p.kind}:${p.user}`, req.session, req.rate)
    return c.json({ rate: pace.rate } satisfies PaceUpdateResponse)
  })

  return app
}
