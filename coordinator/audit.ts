/**
 * The audit trail: one log line (`msg: "audit"`) per change an admin makes —
 * policy set or deleted, machine token created or revoked, version published
 * or retired, storage gc run — naming who (principal and client IP), what, and the state
 * before and after, with the request id of the request that made it. Secrets
 * (a new token's value) never appear; a token is named by its id.
 */
import type { Context } from 'hono'
import type { CoordinatorEnv, Logger } from './interface.ts'

/** The admin changes that are audited. */
export type AuditAction = 'policy.set' | 'policy.delete' | 'token.create' | 'token.revoke' | 'version.publish' | 'version.retire' | 'storage.gc'

/** What one audit line says besides who made the change. */
export interface AuditDetails {
  /** What was changed, e.g. `{ group }`, `{ tokenId }`, `{ image, version }`. */
  target: Record<string, unknown>
  /** The state before the change (null: did not exist). */
  before: unknown
  /** The state after the change (null: no longer exists). */
  after: unknown
}

/** Writes one audit line for a change made by the request in `c`. */
export type Audit = (c: Context<CoordinatorEnv>, action: AuditAction, details: AuditDetails) => void

/** An Audit writing to `logger` at level info (the coordinator gives it a logger that keeps info lines whatever `logLevel` says). */
export function createAudit (logger: Logger): Audit {
  return (c, action, details) => {
    const p = c.get('principal')
    logger.info('audit', {
      action,
      who: p != null ? { kind: p.kind, user: p.user } : null,
      ip: c.get('clientIp'),
      requestId: c.get('requestId'),
      ...details
    })
  }
}
