/**
 * coordinator/routes.ts is the one list of the coordinator's routes and of
 * which take JSON bodies: the app serves exactly those routes, on the
 * patterns the protocol's route helpers build, and the config's JSON body
 * limit applies to exactly the routes marked `json` (before any auth).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { API_PREFIX } from '../../protocol/constants.ts'
import { routes } from '../../protocol/api.ts'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { buildOpenApi } from '../../coordinator/openapi.ts'
import { CONSOLE_PREFIX, ROUTES, routePattern, type RouteSpec } from '../../coordinator/routes.ts'
import { tempDir, type TempDir } from '../helpers/images.ts'

const specs = Object.values(ROUTES as Record<string, RouteSpec>)
const key = (method: string, path: string): string => `${method.toUpperCase()} ${path}`

describe('the route table', () => {
  let dir: TempDir
  let coord: Coordinator
  const MAX_JSON = 4096

  beforeAll(async () => {
    dir = await tempDir()
    coord = createCoordinator({ dataDir: join(dir.path, 'c'), serve: false, logLevel: 'silent', config: { limits: { maxJsonBodyBytes: MAX_JSON } } })
    await coord.start()
  })
  afterAll(async () => {
    await coord?.stop()
    await dir?.cleanup()
  })

  it('builds Hono patterns from the protocol helpers, all under API_PREFIX but health and metrics', () => {
    expect(routePattern(routes.delta, 'name', 'version', 'from')).toBe(`${API_PREFIX}/images/:name/versions/:version/delta/:from`)
    for (const s of specs) if (s !== ROUTES.health && s !== ROUTES.metrics) expect(s.path.startsWith(`${API_PREFIX}/`)).toBe(true)
  })

  it('the app serves exactly the routes in the table (the console apart), and OpenAPI documents each', () => {
    const served = new Set(coord.app.routes.filter(r => r.method !== 'ALL' && r.handler.length < 2 && !r.path.startsWith(CONSOLE_PREFIX) && r.path !== '/' && r.path !== '/favicon.ico').map(r => key(r.method, r.path)))
    expect([...served].sort()).toEqual(specs.map(s => key(s.method, s.path)).sort())
    const documented = new Set(Object.entries(buildOpenApi().paths as Record<string, Record<string, unknown>>)
      .flatMap(([path, ops]) => Object.keys(ops).map(m => key(m, path.replace(/\{(\w+)\}/g, ':$1')))))
    // OpenAPI names path parameters as the protocol does (image, not name)
    const normal = (k: string): string => k.replace(/:\w+/g, ':p')
    expect(new Set([...documented].map(normal))).toEqual(new Set(specs.map(s => normal(key(s.method, s.path)))))
  })

  it('holds exactly the `json` routes without their own limit to the config\'s JSON limit, before auth', async () => {
    const fill = (p: string): string => p.replace(/:(\w+)/g, (_m, n: string) => n === 'id' ? '0123456789abcdef' : n === 'cid' ? 'bafkr4ihkr4ld3m4gqkjf4reryxsy2s5tkbxprqkow6fin2iiyvreuzzab4' : 'x')
    for (const s of specs.filter(s => s.method !== 'GET')) {
      const res = await coord.app.request(fill(s.path), { method: s.method, headers: { 'content-length': String(MAX_JSON + 1), 'content-type': 'application/json' }, body: 'x'.repeat(MAX_JSON + 1) })
      const limited = s.body === 'json' && s.maxBytes == null
      if (limited) expect(res.status, key(s.method, s.path)).toBe(413)
      else expect(res.status, key(s.method, s.path)).not.toBe(413)
    }
  })
})
