/** The console tables' query parameters, validated (a bad one is a 400, like the API's). */
import { EVENT_TYPES } from '../../protocol/api.ts'
import { ValidationError } from '../../protocol/errors.ts'
import { EVENT_CURSOR_PATTERN } from '../event-store.ts'
import { nameParam } from '../request-body.ts'
import { CONSOLE_MAX_PAGE_ROWS, CONSOLE_PAGE_ROWS } from './constants.ts'

/** An optional name parameter (`?image=`, `?site=`...): undefined when absent or empty. */
export const opt = (q: Record<string, string>, k: string, what: string): string | undefined => q[k] == null || q[k] === '' ? undefined : nameParam(q[k], what)

/** Validates `?limit=`. */
export function limitParam (q: Record<string, string>, dflt = CONSOLE_PAGE_ROWS): number {
  if (q.limit == null || q.limit === '') return dflt
  const n = Number(q.limit)
  if (!Number.isSafeInteger(n) || n < 1 || n > CONSOLE_MAX_PAGE_ROWS) {
    throw new ValidationError(`limit: must be an integer between 1 and ${CONSOLE_MAX_PAGE_ROWS}`)
  }
  return n
}

/** Validates `?type=` (an event type). */
export function typeParam (q: Record<string, string>): string | undefined {
  const t = q.type
  if (t == null || t === '') return undefined
  if (!(EVENT_TYPES as readonly string[]).includes(t)) throw new ValidationError(`type: must be one of ${EVENT_TYPES.join(', ')}`)
  return t
}

/** An optional paging cursor that must match `pattern`. */
export function cursorParam (q: Record<string, string>, k: string, pattern: RegExp): string | undefined {
  const v = q[k]
  if (v == null || v === '') return undefined
  if (!pattern.test(v)) throw new ValidationError(`${k}: not a cursor from a previous page`)
  return v
}

export const EVENT_CURSOR = EVENT_CURSOR_PATTERN
/** An agent name as a paging cursor. */
export const AGENT_CURSOR = /^[^\x00]{1,128}$/
