/** POST /v1/auth/login (directory login, rate limited) and GET /v1/auth/me. */
import { Hono, type Context } from 'hono'
import { LoginRequest, type LoginResponse, type MeResponse } from '../protocol/api.ts'
import { UnauthorizedError, UnavailableError } from '../protocol/errors.ts'
import type { Auth } from './auth.ts'
import { RetryAfterError } from './http-errors.ts'
import type { Authenticator, CoordinatorEnv, Logger } from './interface.ts'
import type { Metrics } from './metrics.ts'
import { loginNameKey, type AttemptLimiter } from './rate-limiter.ts'
import { readJson } from './request-body.ts'
import type { SessionTokens } from './session-tokens.ts'

/** What the login route depends on. */
export interface LoginComponents {
  authenticator?: Authenticator
  sessions: SessionTokens
  auth: Auth
  perIp: AttemptLimiter
  perUser: AttemptLimiter
  metrics: Metrics
  logger: Logger
  clientIp: (c: Context<CoordinatorEnv>) => string
}

/** The public login route (mounted before the auth middleware). */
export function createLoginRoutes (components: LoginComponents): Hono<CoordinatorEnv> {
  const { sessions, auth, perIp, perUser, metrics, logger, clientIp } = components
  const app = new Hono<CoordinatorEnv>()
  app.post('/v1/auth/login', async (c) => {
    const { user, password } = await readJson(c, LoginRequest)
    if (components.authenticator == null) {
      metrics.loginFailure('unavailable')
      throw new UnavailableError('no directory configured: user login needs an `ldap` section in the coordinator config (machine and admin tokens still work)')
    }
    const ip = clientIp(c)
    // one failure counter per user however the name is spelled: the name as given, normalized as the
    // directory compares it, and the canonical name of the entry it found (an alias, a mail address)
    const userKeys = new Set([loginNameKey(user)])
    const limited = (wait: number): RetryAfterError => {
      metrics.loginFailure('rate_limited')
      logger.warn('login rate limited', { ip, user })
      return new RetryAfterError(`too many login attempts; try again in ${wait} s`, wait)
    }
    const wait = Math.max(perIp.retryAfter(ip), perUser.retryAfter(loginNameKey(user)))
    if (wait > 0) throw limited(wait)
    perIp.hit(ip)
    const admit = (canonicalUser: string): void => {
      const key = loginNameKey(canonicalUser)
      userKeys.add(key)
      const w = perUser.retryAfter(key)
      if (w > 0) throw limited(w)
    }
    let who
    try {
      who = await components.authenticator.authenticate(user, password, { signal: c.req.raw.signal, admit })
    } catch (err) {
      if (err instanceof RetryAfterError) throw err
      if (err instanceof UnauthorizedError) {
        for (const key of userKeys) perUser.hit(key)
        metrics.loginFailure('bad_credentials')
        logger.info('login refused', { ip, user })
      } else {
        metrics.loginFailure('unavailable')
      }
      if (err instanceof UnavailableError) {
        // the details name internal hosts and steps: they go to the log, not to an anonymous caller
        logger.error('directory unavailable', { user, error: err.message })
        throw new UnavailableError('the directory (LDAP) cannot be reached; try again later', { cause: err })
      }
      throw err
    }
    for (const key of userKeys) perUser.reset(key)
    const { token, expiresAt } = sessions.issue(who.user, who.groups, auth.isAdmin(who))
    metrics.login()
    logger.info('login', { ip, user: who.user, groups: who.groups })
    const body: LoginResponse = { token, expiresAt: expiresAt.toISOString(), user: who.user, groups: who.groups }
    return c.json(body)
  })
  return app
}

/** GET /v1/auth/me (behind the auth middleware). */
export function createMeRoutes (): Hono<CoordinatorEnv> {
  const app = new Hono<CoordinatorEnv>()
  app.get('/v1/auth/me', (c) => {
    const p = c.get('principal')
    const body: MeResponse = { kind: p.kind, user: p.user, groups: p.groups, policy: p.policy }
    return c.json(body)
  })
  return app
}
