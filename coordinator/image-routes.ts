/**
 * HTTP routes of images, versions and the origin (docs/PROTOCOL.md "Images,
 * origin and delta packs"). Mounted at the app root after the auth middleware:
 * every route reads `c.get('principal')` and checks policy before it looks at
 * anything stored, so a caller without the image learns nothing (403 even for
 * an image that does not exist).
 */
import { Hono, type Context } from 'hono'
import { api } from '../protocol/index.ts'
import { parseChunkCid } from '../protocol/block-id.ts'
import { BLOCK_STREAM_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, MAX_CHUNK_BLOCKS, BLOCK_SIZE, MAX_MANIFEST_BYTES } from '../protocol/constants.ts'
import { DELTA_PACK_MEDIA_TYPE } from '../protocol/delta-pack.ts'
import { PaceUpdate, type PaceUpdateResponse } from '../protocol/pace.ts'
import { VERSION_POINTER_MEDIA_TYPE } from '../protocol/version-pointer.ts'
import { assertAdmin, assertImageAccess, canAccessImage } from './access.ts'
import type { Audit } from './audit.ts'
import { parseRangeHeader } from './http-range.ts'
import { pacedBody, paceOwner, requestPace, type Pace, type PaceRegistry } from './pace.ts'
import type { ImageService } from './image-service.ts'
import type { CoordinatorEnv } from './interface.ts'
import { cidParam, nameParam, readBody, readJson } from './request-body.ts'
import { ROUTES } from './routes.ts'
import { toWebStream } from './web-stream.ts'

/** Cache-Control of what never changes under its URL (an exact version's manifest, a chunk, a delta pack). */
const IMMUTABLE = 'private, max-age=31536000, immutable'

/** Immutable responses (an exact version's manifest, a chunk) may be cached by the client; `latest` may not. */
function cacheHeader (version: string): string {
  return version === 'latest' ? 'no-cache' : IMMUTABLE
}

/** The image routes, to mount after the auth middleware. */
export function createImageRoutes (images: ImageService, audit: Audit, paces: PaceRegistry): Hono<CoordinatorEnv> {
  const app = new Hono<CoordinatorEnv>()
  // sender-side pacing of origin streams (background mode; coordinator/pace.ts), sessions shared with the segment routes
  const paceOf = (c: Context<CoordinatorEnv>): Pace | undefined => requestPace(paces, c.get('principal'), name => c.req.header(name))

  // ---- upload (admin) ----
  app.post(ROUTES.chunksMissing.path, async (c) => {
    assertAdmin(c.get('principal'))
    const req = await readJson(c, api.MissingChunksRequest, ROUTES.chunksMissing.maxBytes)
    const cids = req.cids.map(text => parseChunkCid(text))
    const missing = await images.missingChunks(cids, { signal: c.req.raw.signal })
    return c.json({ missing: missing.map(cid => cid.toString()) } satisfies api.MissingChunksResponse)
  })

  app.put(ROUTES.chunkUpload.path, async (c) => {
    assertAdmin(c.get('principal'))
    const cid = cidParam(c.req.param('cid'))
    const bytes = await readBody(c, MAX_CHUNK_BLOCKS * BLOCK_SIZE)
    await images.putChunk(cid, bytes, { signal: c.req.raw.signal })
    return c.body(null, 204)
  })

  // ---- versions ----
  app.post(ROUTES.versionCommit.path, async (c) => {
    assertAdmin(c.get('principal'))
    const image = nameParam(c.req.param('name'), 'name')
    const bytes = await readBody(c, MAX_MANIFEST_BYTES)
    const info = await images.commitVersion(image, bytes, { signal: c.req.raw.signal })
    audit(c, 'version.publish', { target: { image, version: info.version }, before: null, after: info })
    return c.json(info satisfies api.VersionInfo, 201)
  })

  app.get(ROUTES.images.path, async (c) => {
    const principal = c.get('principal')
    return c.json(await images.listImages(image => canAccessImage(principal, image)) satisfies api.ImageList)
  })

  app.get(ROUTES.versionList.path, async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    return c.json(await images.listVersions(image) satisfies api.VersionList)
  })

  app.get(ROUTES.manifest.path, async (c) => {
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

  app.get(ROUTES.versionInfo.path, async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    return c.json(await images.getInfo(image, nameParam(c.req.param('version'), 'version')) satisfies api.VersionInfo)
  })

  app.get(ROUTES.latest.path, async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    const { info, bytes } = await images.getLatestPointer(image)
    const headers = { 'Content-Type': VERSION_POINTER_MEDIA_TYPE, 'Cache-Control': 'no-cache', 'X-Trimswarm-Version': info.version }
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, headers)
  })

  app.post(ROUTES.retire.path, async (c) => {
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
  app.post(ROUTES.blocks.path, async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    const version = nameParam(c.req.param('version'), 'version')
    const req = await readJson(c, api.BlockBatchRequest, ROUTES.blocks.maxBytes)
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
    const headers = { 'Content-Type': BLOCK_STREAM_MEDIA_TYPE, 'X-Trimswarm-Version': info.version, 'Cache-Control': 'no-store', ...out.headers }
    return new Response(out.body as BodyInit, { status: 200, headers })
  })

  app.get(ROUTES.chunk.path, async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    const version = nameParam(c.req.param('version'), 'version')
    const cid = cidParam(c.req.param('cid'))
    const pace = paceOf(c)
    const bytes = await images.getChunk(image, version, cid, { signal: c.req.raw.signal })
    images.countServed('chunk', bytes.length)
    const headers = { 'Content-Type': 'application/octet-stream', ETag: `"${cid.toString()}"`, 'Cache-Control': IMMUTABLE }
    if (pace == null) return c.body(bytes as Uint8Array<ArrayBuffer>, 200, headers)
    const out = pacedBody(bytes, pace)
    return new Response(out.body as BodyInit, { status: 200, headers: { ...headers, 'Content-Length': String(bytes.length), ...out.headers } })
  })

  app.get(ROUTES.delta.path, async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    const pace = paceOf(c)
    const pack = await images.getDeltaPack(image, nameParam(c.req.param('version'), 'version'), nameParam(c.req.param('from'), 'from'))
    const etag = `"${pack.etag}"`
    const base: Record<string, string> = { 'Content-Type': DELTA_PACK_MEDIA_TYPE, ETag: etag, 'Accept-Ranges': 'bytes', 'Cache-Control': IMMUTABLE }
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
    const pieces = await pack.open({ start, end }, { signal: c.req.raw.signal })
    const body = pacedBody(toWebStream(pieces, { onBytes: (n) => { images.countServed('delta', n) } }), pace)
    return new Response(body.body as BodyInit, { status: range != null ? 206 : 200, headers: { ...headers, ...body.headers } })
  })

  // a pace session's new rate (clamped): the agent's background controller, every probe
  app.post(ROUTES.pace.path, async (c) => {
    const req = await readJson(c, PaceUpdate, ROUTES.pace.maxBytes)
    const pace = paces.pace(paceOwner(c.get('principal')), req.session, req.rate)
    return c.json({ rate: pace.rate } satisfies PaceUpdateResponse)
  })

  return app
}
