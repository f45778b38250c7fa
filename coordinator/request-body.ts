/**
 * Reading request bodies, within limits. Malformed JSON and schema failures are
 * ValidationErrors (400), too large a body a TooLargeError (413), never 500.
 *
 * A body refused before it was read to its end (too large, or the request
 * failed first: no token, no access) is read on and dropped before the answer
 * goes out, up to REFUSED_BODY_MAX_BYTES and REFUSED_BODY_MAX_MS: a client
 * still sending then reads the 4xx instead of a reset connection (EPIPE),
 * and the connection stays usable (RFC 9112 §9.6). Past either bound the
 * answer says `Connection: close` and the server closes.
 */
import type { IncomingMessage } from 'node:http'
import type { Context, MiddlewareHandler } from 'hono'
import { TooLargeError, ValidationError } from '../protocol/errors.ts'
import { name as nameSchema } from '../protocol/api.ts'
import type { Schema } from '../protocol/schema.ts'
import { REFUSED_BODY_MAX_BYTES, REFUSED_BODY_MAX_MS } from './constants.ts'

/**
 * Whether the request has no body by its method. A GET or HEAD request has none (the Fetch Request of one is
 * always body-less), and asking for it makes the Node adapter build a full Request per call: a tenth of the
 * manifest route's CPU under load.
 */
function bodiless (c: Context): boolean {
  return c.req.method === 'GET' || c.req.method === 'HEAD'
}

/**
 * The body length the request declares (undefined when it is chunked or has none); throws TooLargeError
 * when that is over `limit`, before a byte of the body is read.
 */
function declaredWithin (c: Context, limit: number): number | undefined {
  const length = c.req.header('content-length')
  if (length == null || c.req.header('transfer-encoding') != null) return undefined
  const declared = Number(length)
  if (declared > limit) throw new TooLargeError(`body of ${declared} bytes is over the ${limit}-byte limit of this route`)
  return declared
}

/** Reads and drops the rest of a body, within the bounds above. Whether it reached the end. */
export async function dropRest (reader: ReadableStreamDefaultReader<Uint8Array>, maxBytes = REFUSED_BODY_MAX_BYTES, maxMs = REFUSED_BODY_MAX_MS): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>(resolve => { timer = setTimeout(() => { resolve('timeout') }, maxMs) })
  try {
    for (let dropped = 0; dropped <= maxBytes;) {
      const read = await Promise.race([reader.read(), timeout])
      if (read === 'timeout') return false
      if (read.done) return true
      dropped += read.value.length
    }
    return false
  } finally {
    clearTimeout(timer)
    reader.releaseLock() // a read still pending rejects; Promise.race has handled it
  }
}

/**
 * Drops what is left of the request body (see the module comment). Whether the
 * whole request has now been received, so that the connection can serve the next.
 */
export async function discardBody (c: Context): Promise<boolean> {
  if (bodiless(c)) return true
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming
  if (incoming == null) return true // not behind a socket (app.request in tests)
  const body = c.req.raw.body
  if (incoming.complete || body == null) return true
  if (body.locked || c.req.raw.bodyUsed) return false
  return await dropRest(body.getReader())
}

/** Reads the whole request body, refusing (TooLargeError) more than `limit` bytes. */
export async function readBody (c: Context, limit: number): Promise<Uint8Array> {
  declaredWithin(c, limit)
  const body = c.req.raw.body
  if (body == null) return new Uint8Array(0)
  const reader = body.getReader()
  const parts: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.length
    if (size > limit) {
      await dropRest(reader)
      throw new TooLargeError(`body is over the ${limit}-byte limit of this route`)
    }
    parts.push(value)
  }
  reader.releaseLock()
  const out = new Uint8Array(size)
  let off = 0
  for (const p of parts) { out.set(p, off); off += p.length }
  return out
}

/**
 * Parses the request body as UTF-8 JSON and validates it with `schema` (strict:
 * unknown fields rejected). `limit` is the route's own; the body-limit
 * middleware of its route group applies as well.
 */
export async function readJson<T> (c: Context, schema: Schema<T>, limit = Infinity): Promise<T> {
  const bytes = await readBody(c, limit)
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw new ValidationError(`body is not valid JSON: ${(err as Error).message}`)
  }
  return schema.parse(value)
}

/**
 * Middleware: refuses (TooLargeError) a body over `limit` bytes before the
 * route sees it. A declared length is checked at once; a chunked body is read
 * here, within the limit, and handed on in memory.
 */
export function bodyLimit (limit: number): MiddlewareHandler {
  return async (c, next) => {
    if (!bodiless(c) && declaredWithin(c, limit) == null && c.req.raw.body != null) {
      c.req.raw = new Request(c.req.raw, { body: await readBody(c, limit) as Uint8Array<ArrayBuffer> })
    }
    await next()
  }
}

/** A path or query parameter that must be a safe name (no `../`, NUL, over-long). */
export function nameParam (value: string | undefined, what: string): string {
  if (value == null) throw new ValidationError(`${what} is required`)
  return nameSchema.parse(value, what)
}

/** A machine token id from a path (16 hex digits); throws ValidationError. */
export function tokenIdParam (value: string | undefined): string {
  if (value == null || !/^[0-9a-f]{16}$/.test(value)) throw new ValidationError('token id must be 16 hex digits')
  return value
}
