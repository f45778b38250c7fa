/**
 * Wire errors with stable names. The coordinator maps each to one HTTP status
 * in one place; clients rebuild the same class from the JSON body
 * `{ "error": { "name": ..., "message": ... } }` with `errorFromWire`.
 */

/** Base of every trimswarm error that can cross the wire. */
export class TrimswarmError extends Error {
  static override name = 'TrimswarmError'
  override name = 'TrimswarmError'
}

/** A value does not match its schema (bad JSON body, unknown field, bad name). */
export class ValidationError extends TrimswarmError {
  static override name = 'ValidationError'
  override name = 'ValidationError'
}

/** Bytes that should hold a manifest or envelope do not decode to a valid one. */
export class InvalidManifestError extends TrimswarmError {
  static override name = 'InvalidManifestError'
  override name = 'InvalidManifestError'
}

/** A signature does not verify against the trusted key. */
export class InvalidSignatureError extends TrimswarmError {
  static override name = 'InvalidSignatureError'
  override name = 'InvalidSignatureError'
}

/** Bytes do not hash to the CID or block digest they were sent as. */
export class HashMismatchError extends TrimswarmError {
  static override name = 'HashMismatchError'
  override name = 'HashMismatchError'
}

/** A CID is not a trimswarm CID (wrong version, codec or hash). */
export class InvalidCidError extends TrimswarmError {
  static override name = 'InvalidCidError'
  override name = 'InvalidCidError'
}

/** No credentials, or credentials that are wrong, expired or revoked. Never says which. */
export class UnauthorizedError extends TrimswarmError {
  static override name = 'UnauthorizedError'
  override name = 'UnauthorizedError'
}

/** Authenticated, but policy does not allow this. */
export class ForbiddenError extends TrimswarmError {
  static override name = 'ForbiddenError'
  override name = 'ForbiddenError'
}

/** The named image, version, token, policy or block does not exist. */
export class NotFoundError extends TrimswarmError {
  static override name = 'NotFoundError'
  override name = 'NotFoundError'
}

/** The request conflicts with stored state (a version that already exists, chunks still missing at commit). */
export class ConflictError extends TrimswarmError {
  static override name = 'ConflictError'
  override name = 'ConflictError'
}

/** A body or message is larger than its limit. */
export class TooLargeError extends TrimswarmError {
  static override name = 'TooLargeError'
  override name = 'TooLargeError'
}

/** Too many attempts (login brute force). */
export class RateLimitedError extends TrimswarmError {
  static override name = 'RateLimitedError'
  override name = 'RateLimitedError'
}

/** A service the request depends on (LDAP) is down. */
export class UnavailableError extends TrimswarmError {
  static override name = 'UnavailableError'
  override name = 'UnavailableError'
}

const WIRE_ERRORS = [
  ValidationError, InvalidManifestError, InvalidSignatureError, HashMismatchError, InvalidCidError,
  UnauthorizedError, ForbiddenError, NotFoundError, ConflictError, TooLargeError, RateLimitedError,
  UnavailableError
] as const

/** JSON body of every error response. */
export interface WireError {
  error: { name: string, message: string }
}

/** The JSON body for an error. */
export function errorToWire (err: TrimswarmError): WireError {
  return { error: { name: err.name, message: err.message } }
}

/** Rebuilds the error class named in a JSON error body; unknown names become a plain TrimswarmError. */
export function errorFromWire (body: unknown, fallbackMessage: string): TrimswarmError {
  const e = (body as WireError | undefined)?.error
  const message = typeof e?.message === 'string' ? e.message : fallbackMessage
  const Cls = WIRE_ERRORS.find(c => c.name === e?.name)
  return Cls != null ? new Cls(message) : new TrimswarmError(message)
}
