/**
 * HTTP routes of the compressed segments (docs/PROTOCOL.md "Segments"). Mounted
 * after the auth middleware; the image policy is checked before anything
 * stored is looked at. Segments are immutable and content-addressed: a strong
 * ETag (the segment's CID), `If-None-Match` (304), `Range` with `If-Range`
 * (206 / 416), and `Cache-Control: private, immutable` for an exact version.
 * A body is paced like every origin stream when the request names a pace
 * session (background mode, coordinator/pace.ts).
 */
import { Hono } from 'hono'
import { MAX_SEGMENTS, SEGMENT_MEDIA_TYPE } from '../protocol/segments.ts'
import { ValidationError } from '../protocol/errors.ts'
import { assertImageAccess } from './access.ts'
import { conditionalAnswer } from './http-range.ts'
import type { CoordinatorEnv } from './interface.ts'
import { nameParam } from './request-body.ts'
import type { SegmentService } from './segment-service.ts'
import { pacedBody, requestPace, type PaceRegistry } from './pace.ts'
import { ROUTES } from './routes.ts'

/** An exact version's responses never change; `latest` may move. */
function cacheHeader (version: string): string {
  return version === 'latest' ? 'no-cache' : 'private, max-age=31536000, immutable'
}

function indexParam (text: string | undefined): number {
  if (text == null || !/^(0|[1-9]\d{0,9})$/.test(text) || Number(text) >= MAX_SEGMENTS) {
    throw new ValidationError(`segment index must be a whole number below ${MAX_SEGMENTS}, got ${JSON.stringify(String(text).slice(0, 20))}`)
  }
  return Number(text)
}

/** The segment routes, to mount after the auth middleware. */
export function createSegmentRoutes (segments: SegmentService, paces: PaceRegistry): Hono<CoordinatorEnv> {
  const app = new Hono<CoordinatorEnv>()

  app.get(ROUTES.segmentList.path, async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    const version = nameParam(c.req.param('version'), 'version')
    const table = await segments.table(image, version)
    // the table of a version never changes once built: its manifest names it
    const etag = `"${table.manifestCid}.segments"`
    const headers = { ETag: etag, 'Cache-Control': cacheHeader(version), 'X-Trimswarm-Version': table.version }
    if (c.req.header('if-none-match') === etag) return c.body(null, 304, headers)
    return c.json(table, 200, headers)
  })

  app.get(ROUTES.segment.path, async (c) => {
    const image = nameParam(c.req.param('name'), 'name')
    assertImageAccess(c.get('principal'), image)
    const version = nameParam(c.req.param('version'), 'version')
    const index = indexParam(c.req.param('index'))
    // a malformed pace header is refused (400) before the segment is read
    const pace = requestPace(paces, c.get('principal'), name => c.req.header(name))
    const file = await segments.segment(image, version, index, { signal: c.req.raw.signal })
    const size = file.bytes.length
    const etag = `"${file.cid}"`
    const base: Record<string, string> = { 'Content-Type': SEGMENT_MEDIA_TYPE, ETag: etag, 'Accept-Ranges': 'bytes', 'Cache-Control': cacheHeader(version) }
    const conditions = { ifNoneMatch: c.req.header('if-none-match'), ifRange: c.req.header('if-range'), range: c.req.header('range') }
    const answer = conditionalAnswer(conditions, etag, size)
    if (answer.status === 304) {
      segments.countServed('notModified', 0)
      return c.body(null, 304, base)
    }
    if (answer.status === 416) return c.body(null, 416, { ...base, 'Content-Range': `bytes */${size}` })
    const body = file.bytes.subarray(answer.start, answer.end + 1)
    const headers: Record<string, string> = { ...base, 'Content-Length': String(body.length) }
    if (answer.status === 206) headers['Content-Range'] = `bytes ${answer.start}-${answer.end}/${size}`
    if (c.req.method === 'HEAD') return c.body(null, answer.status, headers)
    segments.countServed('body', body.length)
    // unpaced, a background sync's segments (3 at a time) went out at full speed: a download beside it kept 0.10 of
    // its speed alone (bench/background.ts, 40 ms)
    if (pace == null) return c.body(body as Uint8Array<ArrayBuffer>, answer.status, headers)
    const out = pacedBody(body, pace)
    return new Response(out.body as BodyInit, { status: answer.status, headers: { ...headers, ...out.headers } })
  })

  return app
}
