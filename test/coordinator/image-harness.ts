/**
 * A real coordinator for the image tests (createCoordinator: level db,
 * directory block store, signer, auth, policy, the image routes) on
 * 127.0.0.1, plus machine tokens for two groups: `desk` (policy: image desk)
 * and `other` (policy: image other only).
 */
import { api } from '../../protocol/index.ts'
import { DEFAULT_POLICY } from '../../coordinator/constants.ts'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import type { ImageService, ImageServiceInit } from '../../coordinator/image-service.ts'

/** Bearer tokens of the harness. */
export interface HarnessTokens {
  admin: string
  /** A machine token of group `desk`, whose policy gives image `desk`. */
  desk: string
  /** A machine token of group `other`, whose policy gives only image `other`. */
  other: string
}

/** A running test coordinator. */
export interface ImageHarness {
  url: string
  dataDir: string
  images: ImageService
  publicKeyRaw: Uint8Array
  tokens: HarnessTokens
  /** fetch against the coordinator with a bearer token. */
  fetch: (path: string, token: string, init?: RequestInit) => Promise<Response>
  /** Resolves once the background work after a publish (compressed segments) is done. */
  settled: () => Promise<void>
  close: () => Promise<void>
}

/** Starts a coordinator with its data under `dataDir`. */
export async function startImageHarness (dataDir: string, images: ImageServiceInit = {}, config: Record<string, unknown> = {}): Promise<ImageHarness> {
  // segments at a fast zstd level: the tests check what is stored and served, not the ratio
  const segments = { zstdLevel: 3, ...(config.segments as Record<string, unknown> | undefined) }
  const coordinator = createCoordinator({ dataDir, listen: '127.0.0.1:0', logLevel: 'silent', config: { ...config, segments, images } })
  await coordinator.start()
  const url = coordinator.url
  const call = async (path: string, token: string, init: RequestInit = {}): Promise<Response> => {
    try {
      return await fetch(url + path, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${token}` } })
    } catch (err) {
      throw new Error(`${init.method ?? 'GET'} ${path} ${JSON.stringify(init.headers ?? {})}: ${(err as Error).message}`, { cause: err })
    }
  }
  const admin = coordinator.adminToken
  const groupToken = async (group: string): Promise<string> => {
    const p = await call(api.routes.policy(group), admin, { method: 'PUT', body: JSON.stringify({ ...DEFAULT_POLICY, images: [group] }), headers: { 'content-type': 'application/json' } })
    if (!p.ok) throw new Error(`policy ${group}: ${p.status} ${await p.text()}`)
    const t = await call(api.routes.tokens, admin, { method: 'POST', body: JSON.stringify({ group }), headers: { 'content-type': 'application/json' } })
    if (!t.ok) throw new Error(`token ${group}: ${t.status} ${await t.text()}`)
    return (await t.json()).token
  }
  const tokens: HarnessTokens = { admin, desk: await groupToken('desk'), other: await groupToken('other') }
  return {
    url,
    dataDir,
    images: coordinator.images,
    publicKeyRaw: coordinator.publicKey,
    tokens,
    fetch: call,
    settled: async () => { await coordinator.segments.whenIdle() },
    close: async () => { await coordinator.stop() }
  }
}
