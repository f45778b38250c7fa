/** The coordinator's structured logger: one JSON line per entry, on stderr by default. */
import type { Logger } from './interface.ts'

/** Log levels in increasing order; `silent` logs nothing (tests). */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const
export type LogLevel = typeof LOG_LEVELS[number]

/** Options of createLogger. */
export interface LoggerInit {
  level?: LogLevel
  /** Where lines go; defaults to process.stderr. */
  write?: (line: string) => void
}

/** A Logger writing `{"time","level","msg",...fields}` lines. */
export function createLogger (init: LoggerInit = {}): Logger {
  const min = LOG_LEVELS.indexOf(init.level ?? 'info')
  const write = init.write ?? ((line: string) => { process.stderr.write(line) })
  const log = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (LOG_LEVELS.indexOf(level) < min) return
    let line: string
    try {
      line = JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })
    } catch {
      line = JSON.stringify({ time: new Date().toISOString(), level, msg, fields: 'unserialisable' })
    }
    write(line + '\n')
  }
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') }
}
