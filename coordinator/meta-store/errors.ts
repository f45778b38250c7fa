/** Errors of the metadata store (never sent on the wire as such: the coordinator does not start, or a request fails with 503). */

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
