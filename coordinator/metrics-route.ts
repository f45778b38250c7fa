/**
 * GET /metrics: the Prometheus exposition, for the admin (token or admin
 * session) or the holder of the dedicated metrics token (config
 * `metrics.tokenFile`, so a Prometheus server needs no admin rights); open to
 * anyone only with `metrics.public: true`. A refusal is the API's usual 401.
 */
import { readFile } from 'node:fs/promises'
import { Hono } from 'hono'
import { routes } from '../protocol/api.ts'
import { UnauthorizedError } from '../protocol/errors.ts'
import { bearerToken, secretMatcher, type Auth } from './auth.ts'
import { MIN_METRICS_TOKEN_CHARS } from './constants.ts'
import { ConfigError } from './errors.ts'
import type { CoordinatorEnv } from './interface.ts'
import type { Metrics } from './metrics.ts'

/** Who may read /metrics (config `metrics`). */
export interface MetricsAccess {
  /** File holding the metrics token (one line). */
  tokenFile?: string
  /** true: no token needed. */
  public?: boolean
}

/** Reads the metrics token file; throws ConfigError when it is unreadable or too short to be a secret. */
async function loadMetricsToken (file: string): Promise<string> {
  let token: string
  try {
    token = (await readFile(file, 'utf8')).trim()
  } catch (err) {
    throw new ConfigError(`metrics.tokenFile: cannot read ${file}: ${(err as Error).message}`, { cause: err })
  }
  if (token.length < MIN_METRICS_TOKEN_CHARS || /\s/.test(token)) {
    throw new ConfigError(`metrics.tokenFile: ${file} must hold one token of at least ${MIN_METRICS_TOKEN_CHARS} characters` +
      ` without spaces (e.g. openssl rand -hex 32)`)
  }
  return token
}

/** The /metrics route; reads the token file once, at start. */
export async function createMetricsRoute (components: { metrics: Metrics, auth: Pick<Auth, 'principalFor'> },
  access: MetricsAccess = {}): Promise<Hono<CoordinatorEnv>> {
  const { metrics, auth } = components
  const isMetricsToken = access.tokenFile != null ? secretMatcher(await loadMetricsToken(access.tokenFile)) : undefined
  const app = new Hono<CoordinatorEnv>()
  app.get(routes.metrics, async (c) => {
    if (access.public !== true) {
      const token = bearerToken(c.req.header('authorization'))
      if (isMetricsToken?.(token) !== true && auth.principalFor(token)?.kind !== 'admin') {
        throw new UnauthorizedError('/metrics needs the metrics token or an admin token')
      }
    }
    return c.body(await metrics.render(), 200, { 'Content-Type': metrics.contentType })
  })
  return app
}
