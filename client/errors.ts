/** Errors of the coordinator HTTP client; answers the coordinator names are rebuilt as their protocol/errors.ts class. */
import { errorFromWire, TrimswarmError } from '../protocol/errors.ts'

/** No coordinator of the list could be reached (network error, or 5xx after every try). */
export class CoordinatorUnreachableError extends Error {
  static override name = 'CoordinatorUnreachableError'
  override name = 'CoordinatorUnreachableError'
}

/** A coordinator URL that is not http:// or https://. */
export class CoordinatorUrlError extends TrimswarmError {
  static override name = 'CoordinatorUrlError'
  override name = 'CoordinatorUrlError'
}

/**
 * A non-2xx answer whose body names no wire error (a proxy's 502 page, an empty 503):
 * the status and what the body said, if anything.
 */
export class CoordinatorHttpError extends TrimswarmError {
  static override name = 'CoordinatorHttpError'
  override name = 'CoordinatorHttpError'
}

/** Where a non-2xx answer came from, on every error `httpError` builds. */
export interface HttpErrorDetails {
  status: number
  method: string
  path: string
}

/**
 * The error of a non-2xx answer: the wire class the coordinator named with its message
 * (NotFoundError, UnauthorizedError, ...), else CoordinatorHttpError; either carries the
 * status, method and path (`httpDetailsOf`).
 */
export function httpError (details: HttpErrorDetails, body: unknown): TrimswarmError {
  const fallback = `${details.method} ${details.path}: HTTP ${details.status}`
  const named = errorFromWire(body, fallback)
  const err = named.constructor === TrimswarmError ? new CoordinatorHttpError(named.message) : named
  return Object.assign(err, { http: details })
}

/** The status, method and path of an error built by `httpError`; undefined for any other error. */
export function httpDetailsOf (err: unknown): HttpErrorDetails | undefined {
  return (err as { http?: HttpErrorDetails } | undefined)?.http
}

/** The one "coordinator unreachable" message: each coordinator tried with what went wrong, and the tries when more than one. */
export function unreachableError (failures: ReadonlyMap<string, string>, tries: number, cause?: unknown): CoordinatorUnreachableError {
  const where = [...failures].map(([url, why]) => `${url}: ${why}`).join('; ')
  return new CoordinatorUnreachableError(`cannot reach the coordinator at ${where}${tries > 1 ? ` (unreachable after ${tries} tries)` : ''}`, { cause })
}

/** A token or password file that cannot be read (missing, a directory, no permission); the errno error is its cause. */
export class SecretFileError extends Error {
  static override name = 'SecretFileError'
  override name = 'SecretFileError'
}
