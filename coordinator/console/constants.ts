/**
 * Defaults of the admin console (coordinator/console/), applied once where
 * each is read. docs/OPERATIONS.md `## Admin console` names them.
 */

/** How often the browser refreshes tables and charts (fetches JSON/SVG, no reload). */
export const CONSOLE_REFRESH_MS = 3000

/** Cookie holding the admin's bearer token (a session token, or the admin token); HttpOnly, SameSite=Strict. */
export const SESSION_COOKIE = 'trimswarm_session'

/** Cookie of the double-submit CSRF token; every form carries the same value in `_csrf`. */
export const CSRF_COOKIE = 'trimswarm_csrf'

/** Form field of the CSRF token. */
export const CSRF_FIELD = '_csrf'

/** Rows per page of the agents and events tables, and their maximum (`?limit=`). */
export const CONSOLE_PAGE_ROWS = 100
export const CONSOLE_MAX_PAGE_ROWS = 1000

/** Recent failures shown on the rollout page. */
export const ROLLOUT_FAILURES_ROWS = 20

/**
 * Most index entries (or agent records) one filtered page may examine: a
 * filter matching almost nothing returns a short page with a cursor to go on,
 * instead of reading the whole store in one request.
 */
export const MAX_SCAN_PER_PAGE = 20_000

/** How often the event index follows new events. */
export const EVENT_INDEX_TAIL_MS = 1000

/**
 * Age an event must have before the index takes it: the event store stamps a
 * batch with its arrival time before committing it (a 1,000-event batch took
 * well under this here), so a younger key could still land below the last one read.
 */
export const EVENT_INDEX_SETTLE_MS = 2000

/** Events read per event-index pass (one level batch). */
export const EVENT_INDEX_BATCH = 5000

/** How often the report is sampled for the charts (a sample is stored only when the report changed). */
export const SERIES_SAMPLE_MS = 5000

/** Samples kept at full resolution for this long; older charts read the coarse samples. */
export const SERIES_FINE_KEEP_MS = 2 * 86_400_000

/** One coarse sample per this interval, kept for the event retention period. */
export const SERIES_COARSE_MS = 10 * 60_000

/** Points per chart (buckets across the chosen window). */
export const CHART_POINTS = 60

/** Chart windows offered, by name; the default is the first. */
export const CHART_WINDOWS: Record<string, number> = {
  '15m': 15 * 60_000,
  '1h': 3600_000,
  '6h': 6 * 3600_000,
  '24h': 86_400_000,
  '7d': 7 * 86_400_000,
  '30d': 30 * 86_400_000
}
