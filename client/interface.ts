/** Types of the coordinator HTTP client. */
import type { AbortOptions, Logger } from '../utils/interface.ts'

export type { AbortOptions }

/** Where the client reports retries and failovers: warnings only. */
export type ClientLogger = Pick<Logger, 'warn'>

/** Paces response bytes (the agent's WAN limit); `take` resolves once `bytes` may be read. */
export interface BytePacer {
  take: (bytes: number, options?: AbortOptions) => Promise<void>
  /** Headers sent with every request while this pacer is in use (background mode's receiver-side pace). */
  requestHeaders?: () => Record<string, string>
}

/** Retry settings for network errors and 5xx. */
export interface RetryOptions {
  /** Rounds over the coordinator list (default 1). */
  attempts?: number
  baseMs?: number
  maxMs?: number
}

/** A response's headers, read by name (case-insensitive); null when absent. */
export interface ResponseHeaders {
  get: (name: string) => string | null
}

/** A response whose body is streamed through the byte counter and pacer. */
export interface StreamedResponse {
  status: number
  headers: ResponseHeaders
  body: AsyncIterable<Uint8Array>
}

/** One request. */
export interface RequestOptions extends AbortOptions {
  /** JSON value (sent as application/json), or raw bytes / text sent with `contentType`. */
  body?: unknown
  contentType?: string
  headers?: Record<string, string>
  /** Sent as `authorization: Bearer TOKEN`. */
  token?: string
  /** Statuses other than 2xx that are not errors (e.g. 304, 416). */
  okStatuses?: number[]
  /** Gives up on one coordinator after this long (a network error: the next one is asked). */
  timeoutMs?: number
  /**
   * The request may reach the coordinator twice with the effect of once: a POST that only reads
   * or is deduplicated by id. GET, HEAD, PUT, DELETE and OPTIONS are by their method. A request
   * that is not goes on a connection of its own, never on one the coordinator may have closed.
   */
  idempotent?: boolean
}
