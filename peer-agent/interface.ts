/** Types shared by the agent's components. */

/** Options every async call takes. */
export interface AbortOptions {
  signal?: AbortSignal
}

/** Where the agent's components report warnings and progress lines for people. */
export interface AgentLogger {
  info: (msg: string) => void
  warn: (msg: string) => void
  /**
   * Routine events a sync recovers from by itself (a peer that left refused a dial, a stream
   * reset, a foreign peer's capability refused, events kept for later): shown with --verbose,
   * otherwise only counted.
   */
  debug?: (msg: string) => void
}

/** A stderr logger that also says how many debug lines it kept back. */
export interface CountingLogger extends AgentLogger {
  debug: (msg: string) => void
  /** Debug lines not shown (without `verbose`). */
  hiddenDebug: () => number
}

/** A logger writing `warning: ...` lines to stderr (the CLI's default); debug lines only when `verbose`. */
export function stderrLogger (quiet = false, options: { verbose?: boolean } = {}): CountingLogger {
  let hidden = 0
  return {
    info: (msg) => { if (!quiet) process.stderr.write(msg + '\n') },
    warn: (msg) => { process.stderr.write(`warning: ${msg}\n`) },
    debug: (msg) => { if (options.verbose === true) process.stderr.write(`debug: ${msg}\n`); else hidden++ },
    hiddenDebug: () => hidden
  }
}

/** A logger that drops everything (tests, --json without --verbose). */
export const silentLogger: AgentLogger = { info: () => {}, warn: () => {} }

/** Bytes by source, as in the summary and events. */
export interface BytesBySource {
  local: number
  peers: number
  origin: number
}
