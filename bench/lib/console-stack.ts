/**
 * The coordinator's components wired as coordinator.ts wires them, plus the
 * admin console mounted as docs/OPERATIONS.md `## Admin console` says, in one
 * process without listening: for the console's benchmark and in-process
 * tests (`stack.app.request()`), until createCoordinator mounts the console itself.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { Hono } from 'hono'
import { createAuth } from '../../coordinator/auth.ts'
import { createLoginRoutes, createMeRoutes } from '../../coordinator/auth-routes.ts'
import { createAdminRoutes } from '../../coordinator/admin-routes.ts'
import { createConsole, type AdminConsole, type ConsoleInit } from '../../coordinator/console/console.ts'
import { BLOCKS_DIR } from '../../coordinator/constants.ts'
import { createDirectoryBlockStore } from '../../coordinator/directory-block-store.ts'
import { createEventRoutes } from '../../coordinator/event-routes.ts'
import { createEventStore, type EventStore } from '../../coordinator/event-store.ts'
import { createErrorHandler } from '../../coordinator/http-errors.ts'
import { createImageRoutes } from '../../coordinator/image-routes.ts'
import { createImageService, type ImageService } from '../../coordinator/image-service.ts'
import type { Authenticator, CoordinatorEnv } from '../../coordinator/interface.ts'
import { createLogger } from '../../coordinator/logger.ts'
import { createManifestSigner } from '../../coordinator/manifest-signer.ts'
import { openMetaDb, type MetaDb } from '../../coordinator/meta-db.ts'
import { createMetrics } from '../../coordinator/metrics.ts'
import { createPolicyEngine } from '../../coordinator/policy-engine.ts'
import { createPolicyStore, type PolicyStore } from '../../coordinator/policy-store.ts'
import { createRateLimiter } from '../../coordinator/rate-limiter.ts'
import { createSessionTokens } from '../../coordinator/session-tokens.ts'
import { createTokenStore } from '../../coordinator/token-store.ts'

/** A wired coordinator with its console. */
export interface ConsoleStack {
  app: Hono<CoordinatorEnv>
  adminToken: string
  db: MetaDb
  events: EventStore
  images: ImageService
  policies: PolicyStore
  console: AdminConsole
  close: () => Promise<void>
}

/** Opens (or creates) a data dir and wires everything; `authenticator` enables user login. */
export async function createConsoleStack (opts: { dataDir: string, authenticator?: Authenticator, adminGroups?: string[], console?: ConsoleInit, now?: () => number }): Promise<ConsoleStack> {
  const logger = createLogger({ level: 'silent' })
  const adminToken = 'tsa_' + randomBytes(24).toString('base64url')
  const db = await openMetaDb(opts.dataDir)
  const metrics = createMetrics()
  const tokens = createTokenStore({ db })
  const policies = createPolicyStore({ db })
  const events = createEventStore({ db }, { now: opts.now })
  await tokens.start(); await policies.start(); await events.start()
  const policy = createPolicyEngine({ policies })
  const sessions = createSessionTokens({ secret: randomBytes(32), ttlSeconds: 3600 })
  const auth = createAuth({ tokens, sessions, policy }, { adminToken, adminGroups: opts.adminGroups ?? ['trimswarm-admins'] })
  const signer = await createManifestSigner(opts.dataDir)
  const blockStore = await createDirectoryBlockStore({ logger }, { path: join(opts.dataDir, BLOCKS_DIR) })
  const images = createImageService({ db, blockStore, signer, logger, dataDir: opts.dataDir }, { buildDeltaPacks: false })
  await images.start()
  const limiter = (): ReturnType<typeof createRateLimiter> => createRateLimiter({ windowMs: 60_000, max: 1000 })

  const app = new Hono<CoordinatorEnv>()
  app.onError(createErrorHandler(logger))
  app.route('/', createLoginRoutes({ authenticator: opts.authenticator, sessions, auth, perIp: limiter(), perUser: limiter(), metrics, logger, clientIp: () => 'in-process' }))
  const admin = createConsole({ auth, api: app, db, events, images, policies, logger }, opts.console)
  await admin.start()
  app.route('/', admin.app)
  app.use('/v1/*', auth.middleware)
  app.route('/', createMeRoutes())
  app.route('/', createAdminRoutes({ tokens, policies }))
  app.route('/', createEventRoutes({ events, metrics }))
  app.route('/', createImageRoutes(images))
  return {
    app, adminToken, db, events, images, policies, console: admin,
    async close () {
      await admin.stop()
      await images.stop()
      await events.stop()
      await db.close()
    }
  }
}
