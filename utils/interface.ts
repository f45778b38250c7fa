/**
 * Types every Node-side component shares (coordinator, agent, chunker, CLI):
 * one AbortOptions and one structured logger, so a component can pass its
 * logger or signal to any other without an adapter.
 */

/** Options every async call takes (js-libp2p's convention): aborting rejects with the signal's reason. */
export interface AbortOptions {
  signal?: AbortSignal
}

/** Machine-readable details of a log entry (JSON lines keep them as fields, text lines may show them). */
export type LogFields = Record<string, unknown>

/** One log level: a message for people, fields for programs. */
export type LogFn = (msg: string, fields?: LogFields) => void

/**
 * Structured logger: a message plus optional fields, at four levels. `debug`
 * is for routine events a component recovers from by itself, shown only when
 * asked for.
 */
export interface Logger {
  debug: LogFn
  info: LogFn
  warn: LogFn
  error: LogFn
}
