/**
 * How the swarm logs what peers do: one line per error (class and message), and the level a
 * peer failure deserves. On a LAN agents stop after their sync, so a peer that went away is
 * routine (debug), while a forged capability or a broken message is worth a warning.
 */
import { CapabilityMismatchError, ExpiredCapabilityError } from '../../protocol/capability.ts'
import type { SwarmLogger } from './interface.ts'

/** Error names of a peer that went away mid-stream (it stopped, its sync ended). */
const GONE_NAMES = new Set(['StreamResetError', 'StreamStateError', 'StreamClosedError', 'ConnectionClosedError', 'ConnectionClosingError', 'AbortError'])

/** Network codes of a peer that is not there any more (it left after its sync). */
const GONE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH'])

/**
 * Whether an error only says a peer went away (a reset stream, a dial refused): routine on a LAN
 * where agents stop after their sync, so it is logged at debug level and counted, not warned about.
 */
export function isPeerGone (err: unknown, depth = 0): boolean {
  if (err == null || typeof err !== 'object' || depth > 5) return false
  const e = err as { name?: string, code?: string, errors?: unknown[], cause?: unknown, message?: string }
  if (GONE_NAMES.has(e.name ?? '') || GONE_CODES.has(e.code ?? '')) return true
  if (Array.isArray(e.errors) && e.errors.length > 0) return e.errors.every(x => isPeerGone(x, depth + 1))
  if (e.cause != null) return isPeerGone(e.cause, depth + 1)
  return /\bECONNREFUSED\b/.test(e.message ?? '')
}

/**
 * A capability of a peer that is not ours to serve but not forged either: signed by our
 * coordinator for another image or version, or expired (a peer of another update, a late one).
 */
export function isForeignCapability (err: unknown): boolean {
  return err instanceof CapabilityMismatchError || err instanceof ExpiredCapabilityError
}

/** The logger call for a peer failure: debug when the peer only went away, else `fallback`. */
export function peerLog (logger: SwarmLogger, err: unknown, fallback: 'info' | 'warn'): (msg: string) => void {
  return isPeerGone(err) ? (logger.debug ?? (() => {})) : logger[fallback]
}

/** One line for a log: the error's class and message (the class tells a reset stream from a bad message). */
export function describeError (err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`
  return String(err)
}
