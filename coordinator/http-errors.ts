/**
 * The one place where errors become HTTP responses: each wire error class
 * (protocol/errors.ts) has one status, the body is always
 * `{ "error": { "name", "message" } }`; anything unexpected is logged and
 * answered 500 with a generic message (no internals leak).
 */
import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import {
  ConflictError, errorToWire, ForbiddenError, HashMismatchError, InvalidCidError, InvalidManifestError, InvalidSignatureError,
  NotFoundError, RateLimitedError, TooLargeError, TrimswarmError, UnauthorizedError, UnavailableError, ValidationError
} from '../protocol/errors.ts'
import type { Logger } from './interface.ts'
import { REFUSED_BODY_MAX_BYTES, REFUSED_UNAUTHORIZED_BODY_MAX_BYTES } from './constants.ts'
import { closeAfterAnswer, discardBody } from './request-body.ts'

/** HTTP status of each wire error, by class name. */
export const STATUS_OF_ERROR: Record<string, number> = {
  [ValidationError.name]: 400,
  [InvalidManifestError.name]: 400,
  [InvalidCidError.name]: 400,
  [InvalidSignatureError.name]: 400,
  [HashMismatchError.name]: 422,
  [UnauthorizedError.name]: 401,
  [ForbiddenError.name]: 403,
  [NotFoundError.name]: 404,
  [ConflictError.name]: 409,
  [TooLargeError.name]: 413,
  [RateLimitedError.name]: 429,
  [UnavailableError.name]: 503
}

/** The wire error a status stands for, for HTTPExceptions thrown by hono middleware. */
function errorForStatus (status: number, message: string): TrimswarmError {
  switch (status) {
    case 400: return new ValidationError(message)
    case 401: return new UnauthorizedError(message)
    case 403: return new ForbiddenError(message)
    case 404: return new NotFoundError(message)
    case 409: return new ConflictError(message)
    case 413: return new TooLargeError(message)
    case 429: return new RateLimitedError(message)
    case 503: return new UnavailableError(message)
    default: return new TrimswarmError(message)
  }
}

/** The JSON error response for a wire error. */
export function errorResponse (c: Context, err: TrimswarmError, extraHeaders: Record<string, string> = {}): Response {
  const status = STATUS_OF_ERROR[err.name] ?? 500
  for (const [k, v] of Object.entries(extraHeaders)) c.header(k, v)
  if (status === 401) c.header('WWW-Authenticate', 'Bearer realm="trimswarm"')
  return c.json(errorToWire(err), status as 400)
}

/** A RateLimitedError that knows when to retry (sent as Retry-After). */
export class RetryAfterError extends RateLimitedError {
  retryAfterSeconds: number
  constructor (message: string, retryAfterSeconds: number) {
    super(message)
    this.retryAfterSeconds = retryAfterSeconds
  }
}

/** Builds the app's onError handler. */
export function createErrorHandler (logger: Logger): (err: Error, c: Context) => Promise<Response> {
  return async (err, c) => {
    // the route may have failed before reading the whole body: drop the rest first (request-body.ts); a caller
    // refused for who it is gets a short lingering only
    const refusedCaller = err instanceof UnauthorizedError || err instanceof ForbiddenError
    if (!(await discardBody(c, refusedCaller ? REFUSED_UNAUTHORIZED_BODY_MAX_BYTES : REFUSED_BODY_MAX_BYTES))) closeAfterAnswer(c)
    if (err instanceof TrimswarmError && STATUS_OF_ERROR[err.name] != null) {
      const headers: Record<string, string> = err instanceof RetryAfterError ? { 'Retry-After': String(err.retryAfterSeconds) } : {}
      if (err instanceof UnavailableError) logger.warn('dependency unavailable', { path: c.req.path, error: err.message })
      return errorResponse(c, err, headers)
    }
    if (err instanceof HTTPException && err.status < 500) {
      return errorResponse(c, errorForStatus(err.status, err.message !== '' ? err.message : `HTTP ${err.status}`))
    }
    logger.error('unexpected error', { method: c.req.method, path: c.req.path, error: err?.message, stack: err?.stack })
    return c.json(errorToWire(new TrimswarmError('internal error; see the coordinator log')), 500)
  }
}
