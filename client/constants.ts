/** Defaults of the coordinator HTTP client (client/). */

/**
 * Pause before asking the next coordinator of a list after one failed: short, as the
 * next one is another machine, not the same one recovering (docs/OPERATIONS.md "Failover").
 */
export const FAILOVER_DELAY_MS = 200

/** Tries of one request when the caller sets none: the admin commands and publish ask once and report. */
export const DEFAULT_ATTEMPTS = 1

/** First retry delay; doubled each time (with jitter) up to DEFAULT_RETRY_MAX_MS. */
export const DEFAULT_RETRY_BASE_MS = 500

/** Longest wait between two retries of one request. */
export const DEFAULT_RETRY_MAX_MS = 30_000

/** Largest error body read to find the coordinator's message (a proxy may answer with a big HTML page). */
export const ERROR_BODY_MAX_BYTES = 1024 * 1024

/** Chunk uploads in flight during `trimswarm publish` (enough to hide per-request latency; the coordinator fsyncs each). */
export const DEFAULT_PUBLISH_CONCURRENCY = 6

/** CIDs per POST /v1/chunks/missing request of the publish client (the schema allows 100,000). */
export const PUBLISH_MISSING_BATCH = 10_000
