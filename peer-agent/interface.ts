/** Types shared by the agent's components. */
import type { Logger } from '../utils/interface.ts'
import { silentLogger as silent } from '../utils/logger.ts'
import { createAgentLogger } from './logger.ts'

/** Options every async call takes (one for every side, in utils/). */
export type { AbortOptions } from '../utils/interface.ts'

/**
 * Where the agent's components report warnings and progress: the structured Logger of utils/
 * (a message for people, fields for programs), of which the agent needs `info` and `warn`.
 * `debug` is for routine events a sync recovers from by itself (a peer that left refused a dial,
 * a stream reset, a foreign peer's capability refused, events kept for later): shown with
 * --verbose, otherwise only counted; a component calls it as `logger.debug?.(...)`.
 */
export type AgentLogger = Pick<Logger, 'info' | 'warn'> & Partial<Pick<Logger, 'debug' | 'error'>>

/** A logger that also says how many debug lines it kept back (the CLI's summary line counts them). */
export interface CountingLogger extends Pick<Logger, 'info' | 'warn' | 'debug'> {
  /** Debug lines not shown (without `verbose`). */
  hiddenDebug: () => number
}

/** A logger writing text lines (`warning: ...` for warnings) to stderr (the CLI's default; logger.ts has the JSON format); debug lines only when `verbose`. */
export function stderrLogger (quiet = false, options: { verbose?: boolean } = {}): CountingLogger {
  return createAgentLogger({ quiet, verbose: options.verbose })
}

/** A logger that drops everything (tests, --json without --verbose). */
export const silentLogger: AgentLogger = silent

/** Bytes by source, as in the summary and events. */
export interface BytesBySource {
  local: number
  peers: number
  origin: number
}
