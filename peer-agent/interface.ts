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
}

/** A logger writing text lines (`warning: ...` for warnings) to stderr (the CLI's default; logger.ts has the JSON format). */
export function stderrLogger (quiet = false): AgentLogger {
  return createAgentLogger({ quiet })
}

/** A logger that drops everything (tests, --json without --verbose). */
export const silentLogger: AgentLogger = { info: () => {}, warn: () => {} }

/** Bytes by source, as in the summary and events. */
export interface BytesBySource {
  local: number
  peers: number
  origin: number
}
