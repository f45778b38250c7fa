/** Admin API: machine tokens (/v1/tokens), group policies (/v1/policies), the image list and storage gc (/v1/admin/*). Admin principal only. */
import { Hono } from 'hono'
import { Policy, TokenCreateRequest, type TokenCreateResponse } from '../protocol/api.ts'
import { GcRequest, type AdminImageList, type GcReport, type TokenList } from '../protocol/api-admin.ts'
import { NotFoundError } from '../protocol/errors.ts'
import { assertAdmin } from './access.ts'
import type { Audit } from './audit.ts'
import type { ImageService } from './image-service.ts'
import type { CoordinatorEnv } from './interface.ts'
import type { PolicyStore } from './policy-store.ts'
import { ADMIN_PATTERNS, ROUTES } from './routes.ts'
import { nameParam, readJson, tokenIdParam } from './request-body.ts'
import type { StorageGc } from './storage-gc.ts'
import type { TokenStore } from './token-store.ts'

/** What the admin routes depend on. */
export interface AdminComponents {
  tokens: TokenStore
  policies: PolicyStore
  images: ImageService
  storageGc: StorageGc
  audit: Audit
}

/** Routes of the admin API (behind the auth middleware). */
export function createAdminRoutes (components: AdminComponents): Hono<CoordinatorEnv> {
  const { tokens, policies, images, storageGc, audit } = components
  const app = new Hono<CoordinatorEnv>()
  // every path under these is the admin's, routes to come included
  for (const pattern of ADMIN_PATTERNS) app.use(pattern, async (c, next) => { assertAdmin(c.get('principal')); await next() })

  app.get(ROUTES.adminImages.path, async (c) => c.json(await images.adminImages() satisfies AdminImageList))
  app.post(ROUTES.gc.path, async (c) => {
    const req = await readJson(c, GcRequest)
    // not bound to the request: a client that gives up waiting does not cut a run short (it is safe either way)
    const report: GcReport = await storageGc.run({ dryRun: req.dryRun })
    if (!report.dryRun) audit(c, 'storage.gc', { target: { store: 'blocks and delta packs' }, before: null, after: report })
    return c.json(report)
  })

  app.post(ROUTES.tokenCreate.path, async (c) => {
    const req = await readJson(c, TokenCreateRequest)
    const { info, token } = await tokens.create(req.group, req.name, { site: req.site })
    audit(c, 'token.create', { target: { tokenId: info.id }, before: null, after: info })
    const body: TokenCreateResponse = { ...info, token }
    return c.json(body, 201)
  })
  app.get(ROUTES.tokenList.path, async (c) => {
    const body: TokenList = { tokens: await tokens.list() }
    return c.json(body)
  })
  app.delete(ROUTES.tokenRevoke.path, async (c) => {
    const id = tokenIdParam(c.req.param('id'))
    const before = (await tokens.list()).find(t => t.id === id) ?? null
    const after = await tokens.revoke(id)
    audit(c, 'token.revoke', { target: { tokenId: id }, before, after })
    return c.json(after)
  })

  app.get(ROUTES.policyList.path, (c) => c.json(policies.all()))
  app.get(ROUTES.policyGet.path, (c) => {
    const group = nameParam(c.req.param('group'), 'group')
    const p = policies.get(group)
    if (p == null) throw new NotFoundError(`no policy for group ${group}`)
    return c.json(p)
  })
  app.put(ROUTES.policyPut.path, async (c) => {
    const group = nameParam(c.req.param('group'), 'group')
    const policy = await readJson(c, Policy)
    const before = policies.get(group) ?? null
    await policies.put(group, policy)
    audit(c, 'policy.set', { target: { group }, before, after: policy })
    return c.json(policy)
  })
  app.delete(ROUTES.policyDelete.path, async (c) => {
    const group = nameParam(c.req.param('group'), 'group')
    const before = policies.get(group) ?? null
    await policies.delete(group)
    audit(c, 'policy.delete', { target: { group }, before, after: null })
    return c.body(null, 204)
  })
  return app
}
