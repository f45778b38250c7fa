/** Types shared by the agent's components. */
import { createAgentLogger } from './logger.ts'

/** Options every async call takes. */
export interface AbortOptions {
  signal?: AbortSignal
}

/** Where the agent's components report warnings and progress: a message for people, and fields for programs (JSON lines). */
export interface AgentLogger {
  info: (msg: string, fields?: Record<string, unknown>) => void
  warn: (msg: string, fields?: Record<string, unknown>) => void
  /**
   * Routine events a sync recovers from by itself (a peer that left refused a dial, a stream
   * reset, a foreign peer's capability refused, events kept for later): shown with --verbose,
   * otherwise only counted.
   */
  debug?: (msg: string, fields?: Record<string, unknown>) => void
}

/** A logger that also says how many debug lines it kept back (the CLI's summary line counts them). */
export interface CountingLogger extends AgentLogger {
  debug: (msg: string, fields?: Record<string, unknown>) => void
  /** Debug lines not shown (without `verbose`). */
  hiddenDebug: () => number
}

/** A logger writing text lines (`warning: ...` for warnings) to stderr (the CLI's default; logger.ts has the JSON format); debug lines only when `verbose`. */
export function stderrLogger (quiet = false, options: { verbose?: boolean } = {}): CountingLogger {
  return createAgentLogger({ quiet, verbose: options.verbose })
}

/** A logger that drops everything (tests, --json without --verbose). */
export const silentLogger: AgentLogger = { info: () => {}, warn: () => {} }

/** Bytes by source, as in the summary and events. */
export interface BytesBySource {
  local: number
  peers: number
  origin: number
}
