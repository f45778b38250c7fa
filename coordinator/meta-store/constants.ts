/** Defaults of the metadata store (docs/CONFIGURATION.md `metadata`). */

/** Connections each coordinator keeps to PostgreSQL at most (config `metadata.postgres.maxConnections`). */
export const PG_MAX_CONNECTIONS = 10

/** How long opening a connection may take before the request fails (the database is down or unreachable). */
export const PG_CONNECT_TIMEOUT_MS = 10_000

/** The server cancels a statement running longer (every statement is a point read, a page, or a small batch). */
export const PG_STATEMENT_TIMEOUT_MS = 30_000

/** Rows one iterator query reads; a scan of a large space holds one page at a time. */
export const PG_ITERATOR_PAGE = 500

/**
 * Bytes of values after which an iterator's page ends early (its last row may pass it): values
 * can be large (a 2 GiB delta pack's record lists ~2,000 pieces, ~170 KB; a version's block
 * digests are 8 MiB per GiB of image), and 500 of them at once would be hundreds of MB.
 */
export const PG_ITERATOR_PAGE_BYTES = 4 * 1024 * 1024

/**
 * How old an in-memory mirror of shared state (machine tokens, policies,
 * session revocations, report aggregates, version records) may be when
 * several coordinators share the store: each reloads it this often, so a
 * revoke on one coordinator is enforced by all within this time (docs/SECURITY.md).
 */
export const SHARED_REFRESH_MS = 2_000

/** A lease (background work one coordinator does for all) expires this long after its last renewal when its holder dies. */
export const LEASE_TTL_MS = 30_000

/** A lease holder renews its lease this often while it works. */
export const LEASE_RENEW_MS = 10_000
