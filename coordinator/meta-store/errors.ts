/** Errors of the metadata store (never sent on the wire as such: the coordinator does not start, or a request fails with 503). */
import { UnavailableError } from '../../protocol/errors.ts'

/** PostgreSQL cannot be reached or refused the login. */
export class MetaStoreUnavailableError extends Error {
  static override name = 'MetaStoreUnavailableError'
  override name = 'MetaStoreUnavailableError'
}

/** The database holds schema migrations this coordinator does not know: a newer coordinator wrote it. */
export class SchemaTooNewError extends Error {
  static override name = 'SchemaTooNewError'
  override name = 'SchemaTooNewError'
}

/**
 * A write under a lock whose PostgreSQL session ended while it was held (the server then released the lock, which
 * another coordinator may hold by now): the write is not made. A 503 to the client, which retries.
 */
export class LockLostError extends UnavailableError {
  static override name = 'LockLostError'
  override name = 'LockLostError'
}
