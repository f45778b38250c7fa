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
 *
 * No middleware reads a body: only the route does, through readBody, after
 * the auth middleware and the route's own access check passed, so a request
 * without valid credentials never has its body held in memory. The limits of
 * the middlewares below (bodyLimit) are recorded and applied by readBody, and
 * every byte it holds counts against the coordinator's one BodyBudget.
 */
import type { IncomingMessage } from 'node:http'
import type { CID } from 'multiformats/cid'
import type { Context, MiddlewareHandler } from 'hono'
import { TooLargeError, UnavailableError, ValidationError } from '../protocol/errors.ts'
import { name as nameSchema } from '../protocol/api.ts'
import { parseChunkCid } from '../protocol/block-id.ts'
import type { Schema } from '../protocol/schema.ts'
import type { BodyBudget } from './body-budget.ts'
import { formatBytes } from './console/format.ts'
import { REFUSED_BODY_LINGER_MS, REFUSED_BODY_MAX_BYTES, REFUSED_BODY_MAX_MS } from './constants.ts'
import type { CoordinatorEnv } from './interface.ts'

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
export async function dropRest (
  reader: ReadableStreamDefaultReader<Uint8Array>, maxBytes = REFUSED_BODY_MAX_BYTES, maxMs = REFUSED_BODY_MAX_MS
): Promise<boolean> {
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
 * Reads and drops a body nobody has read yet straight from the socket, within
 * the same bounds as dropRest. Not through `c.req.raw.body`: the web stream the
 * Node adapter builds (Readable.toWeb) reads ahead with no byte limit, so a
 * fast client's refused body would pile up in memory while it is dropped.
 */
async function dropIncoming (incoming: IncomingMessage, maxBytes = REFUSED_BODY_MAX_BYTES, maxMs = REFUSED_BODY_MAX_MS): Promise<boolean> {
  return await new Promise<boolean>(resolve => {
    let dropped = 0
    const finish = (whole: boolean): void => {
      clearTimeout(timer)
      incoming.off('data', onData)
      incoming.off('end', onEnd)
      incoming.off('close', onClose)
      if (!whole) incoming.pause()
      resolve(whole)
    }
    const onData = (piece: Buffer): void => { dropped += piece.length; if (dropped > maxBytes) finish(false) }
    const onEnd = (): void => { finish(true) }
    const onClose = (): void => { finish(incoming.complete) }
    const timer = setTimeout(() => { finish(false) }, maxMs)
    incoming.on('data', onData)
    incoming.once('end', onEnd)
    incoming.once('close', onClose)
  })
}

/**
 * Drops what is left of the request body (see the module comment), up to
 * `maxBytes`. Whether the whole request has now been received, so that the
 * connection can serve the next.
 */
export async function discardBody (c: Context, maxBytes = REFUSED_BODY_MAX_BYTES): Promise<boolean> {
  if (bodiless(c)) return true
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming
  if (incoming == null) return true // not behind a socket (app.request in tests)
  if (incoming.complete) return true
  if (incoming.readableFlowing == null && !incoming.readableDidRead) return await dropIncoming(incoming, maxBytes)
  const body = c.req.raw.body
  if (body == null) return true
  if (body.locked || c.req.raw.bodyUsed) return false
  return await dropRest(body.getReader(), maxBytes)
}

/**
 * Makes the answer to a request whose body was not read to its end the last
 * on its connection, and closes that connection gently: the answer is sent,
 * then a FIN, while the rest of the body stays unread (no memory spent on it);
 * the socket is destroyed only `lingerMs` later. Closing at once, with unread
 * bytes, makes the kernel send a reset that can destroy the answer before the
 * client has read it (a client still sending would see EPIPE, not the 4xx).
 */
export function closeAfterAnswer (c: Context, lingerMs = REFUSED_BODY_LINGER_MS): void {
  c.header('Connection', 'close')
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming
  const socket = incoming?.socket
  if (incoming == null || socket == null) return
  // once answered, Node would read and drop the rest of the body itself, with no bound
  ;(incoming as IncomingMessage & { _dumped?: boolean })._dumped = true
  incoming.pause()
  socket.pause()
  const lingering = socket as typeof socket & { destroySoon?: () => void }
  lingering.destroySoon = () => {
    socket.end()
    setTimeout(() => { socket.destroy() }, lingerMs).unref()
  }
}

/** The body limit the middlewares set for this request (bodyLimit), or Infinity. */
function middlewareLimit (c: Context): number {
  return (c as Context<CoordinatorEnv>).get('bodyLimit') ?? Infinity
}

/**
 * Reads the whole request body, refusing (TooLargeError) more than `limit`
 * bytes or the middlewares' limit, and (UnavailableError, 503) more than the
 * coordinator's body budget has left. Call it only once the caller is known
 * to be allowed to send this body.
 */
export async function readBody (c: Context, limit: number): Promise<Uint8Array> {
  const max = Math.min(limit, middlewareLimit(c))
  declaredWithin(c, max)
  const body = c.req.raw.body
  if (body == null) return new Uint8Array(0)
  const lease = (c as Context<CoordinatorEnv>).get('bodyLease')
  const reader = body.getReader()
  const parts: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.length
    if (size > max) {
      await dropRest(reader)
      throw new TooLargeError(`body is over the ${max}-byte limit of this route`)
    }
    if (lease != null && !lease.take(value.length)) {
      await dropRest(reader)
      const held = formatBytes(lease.maxBytes)
      throw new UnavailableError(`the coordinator already holds its limit of ${held} of request bodies in memory; try again in a few seconds`)
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
 * Middleware: refuses (TooLargeError) a body over `limit` bytes. A declared
 * length is checked at once, before anything is read; otherwise the limit is
 * recorded for readBody (the smallest of all that apply wins). It reads no
 * body: the request may not even be authenticated yet.
 */
export function bodyLimit (limit: number): MiddlewareHandler<CoordinatorEnv> {
  return async (c, next) => {
    if (!bodiless(c)) {
      declaredWithin(c, limit)
      c.set('bodyLimit', Math.min(middlewareLimit(c), limit))
    }
    await next()
  }
}

/** Middleware: the request's lease of `budget` (readBody takes from it), given back when the route has answered. */
export function bodyBudget (budget: BodyBudget): MiddlewareHandler<CoordinatorEnv> {
  return async (c, next) => {
    const lease = budget.lease()
    c.set('bodyLease', lease)
    try {
      await next()
    } finally {
      lease.release()
    }
  }
}

/**
 * Middleware for routes that parse their body with hono (`c.req.parseBody()`,
 * the console's forms): reads it through readBody (limits and budget apply)
 * and hands it on in memory.
 */
export function bufferBody (): MiddlewareHandler<CoordinatorEnv> {
  return async (c, next) => {
    if (!bodiless(c) && c.req.raw.body != null) {
      c.req.raw = new Request(c.req.raw, { body: await readBody(c, Infinity) as Uint8Array<ArrayBuffer> })
    }
    await next()
  }
}

/** A path or query parameter that must be a safe name (no `../`, NUL, over-long). */
export function nameParam (value: string | undefined, what: string): string {
  if (value == null) throw new ValidationError(`${what} is required`)
  return nameSchema.parse(value, what)
}

/** A chunk CID from a path; throws ValidationError (InvalidCidError for one that is not a trimswarm chunk CID). */
export function cidParam (value: string | undefined): CID {
  if (value == null) throw new ValidationError('cid is required')
  return parseChunkCid(value)
}

/** A machine token id from a path (16 hex digits); throws ValidationError. */
export function tokenIdParam (value: string | undefined): string {
  if (value == null || !/^[0-9a-f]{16}$/.test(value)) throw new ValidationError('token id must be 16 hex digits')
  return value
}
