/**
 * The agent's logger: lines for people (`msg`, `warning: msg`, then
 * `key=value` fields) or JSON lines (`{"time","level","msg",...fields}`) for
 * the journal and log shippers. The coordinator has its own (the two sides
 * share only protocol/).
 */
import type { CountingLogger } from './interface.ts'

/** Line formats of `--log-format`. */
export const AGENT_LOG_FORMATS = ['text', 'json'] as const
export type AgentLogFormat = typeof AGENT_LOG_FORMATS[number]

/** Options of createAgentLogger. */
export interface AgentLoggerInit {
  /** Default text. */
  format?: AgentLogFormat
  /** Drop info lines (warnings still go out). */
  quiet?: boolean
  /** Write debug lines (routine peer events); without it they are only counted. */
  verbose?: boolean
  /** Where lines go; defaults to process.stderr. */
  write?: (line: string) => void
}

/**
 * The format when none is given: JSON under systemd (it sets INVOCATION_ID
 * for a unit's processes and JOURNAL_STREAM when output goes to the journal),
 * else text (a terminal, or the pipes of scripts that read today's lines).
 */
export function defaultAgentLogFormat (env: Record<string, string | undefined> = process.env): AgentLogFormat {
  return env.INVOCATION_ID != null || env.JOURNAL_STREAM != null ? 'json' : 'text'
}

function textValue (v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v)
  return /^[^\s"=]+$/.test(s) ? s : JSON.stringify(s)
}

function line (format: AgentLogFormat, level: 'debug' | 'info' | 'warn', msg: string, fields: Record<string, unknown> = {}): string {
  if (format === 'json') {
    try {
      return JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })
    } catch {
      return JSON.stringify({ time: new Date().toISOString(), level, msg })
    }
  }
  const rest = Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) => ` ${k}=${textValue(v)}`).join('')
  return `${level === 'warn' ? 'warning: ' : level === 'debug' ? 'debug: ' : ''}${msg}${rest}`
}

/** A logger writing one line per entry in `format`; debug lines only when `verbose`, otherwise counted. */
export function createAgentLogger (init: AgentLoggerInit = {}): CountingLogger {
  const format = init.format ?? 'text'
  const write = init.write ?? ((text: string) => { process.stderr.write(text) })
  let hidden = 0
  return {
    info: (msg, fields) => { if (init.quiet !== true) write(line(format, 'info', msg, fields) + '\n') },
    warn: (msg, fields) => { write(line(format, 'warn', msg, fields) + '\n') },
    debug: (msg, fields) => { if (init.verbose === true) write(line(format, 'debug', msg, fields) + '\n'); else hidden++ },
    hiddenDebug: () => hidden
  }
}
