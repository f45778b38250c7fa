/** Types shared by the agent's components. */

/** Options every async call takes. */
export interface AbortOptions {
  signal?: AbortSignal
}

/** Where the agent's components report warnings and progress lines for people. */
export interface AgentLogger {
  info: (msg: string) => void
  warn: (msg: string) => void
}

/** A logger writing `warning: ...` lines to stderr (the CLI's default). */
export function stderrLogger (quiet = false): AgentLogger {
  return {
    info: (msg) => { if (!quiet) process.stderr.write(msg + '\n') },
    warn: (msg) => { process.stderr.write(`warning: ${msg}\n`) }
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
