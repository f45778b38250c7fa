/**
 * The coordinator's structured logger: one line per entry, on stderr by
 * default, as JSON (`{"time","level","msg",...fields}`, for the journal and
 * log shippers) or as text (`TIME LEVEL msg key=value ...`, for a terminal).
 */
import type { Logger } from './interface.ts'

/** Log levels in increasing order; `silent` logs nothing (tests). */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const
export type LogLevel = typeof LOG_LEVELS[number]

/** Line formats of `--log-format`. */
export const LOG_FORMATS = ['text', 'json'] as const
export type LogFormat = typeof LOG_FORMATS[number]

/** Options of createLogger. */
export interface LoggerInit {
  level?: LogLevel
  /** Default json. */
  format?: LogFormat
  /** Where lines go; defaults to process.stderr. */
  write?: (line: string) => void
}

/**
 * The format when none is given: JSON under systemd (it sets INVOCATION_ID
 * for a unit's processes and JOURNAL_STREAM when output goes to the journal),
 * text on a terminal, else JSON (a pipe or file is read by programs).
 */
export function defaultLogFormat (env: Record<string, string | undefined> = process.env, isTTY = process.stderr.isTTY === true): LogFormat {
  if (env.INVOCATION_ID != null || env.JOURNAL_STREAM != null) return 'json'
  return isTTY ? 'text' : 'json'
}

/** A value as text: bare when it has no spaces, quotes or `=`, else JSON-quoted. */
function textValue (v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v)
  return /^[^\s"=]+$/.test(s) ? s : JSON.stringify(s)
}

function formatLine (format: LogFormat, level: LogLevel, msg: string, fields: Record<string, unknown> | undefined): string {
  const time = new Date().toISOString()
  if (format === 'text') {
    const rest = Object.entries(fields ?? {}).filter(([, v]) => v !== undefined).map(([k, v]) => ` ${k}=${textValue(v)}`).join('')
    return `${time} ${level.toUpperCase()} ${msg}${rest}`
  }
  try {
    return JSON.stringify({ time, level, msg, ...fields })
  } catch {
    return JSON.stringify({ time, level, msg, fields: 'unserialisable' })
  }
}

/** A Logger writing one line per entry in `format`. */
export function createLogger (init: LoggerInit = {}): Logger {
  const min = LOG_LEVELS.indexOf(init.level ?? 'info')
  const format = init.format ?? 'json'
  const write = init.write ?? ((line: string) => { process.stderr.write(line) })
  const log = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (LOG_LEVELS.indexOf(level) < min) return
    let line: string
    try {
      line = formatLine(format, level, msg, fields)
    } catch {
      line = formatLine(format, level, msg, { fields: 'unserialisable' })
    }
    write(line + '\n')
  }
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') }
}
