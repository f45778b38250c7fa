/**
 * The coordinator side of the benchmarks that run agents: a coordinator on
 * 127.0.0.1 (data under WORK), a policy for group `branch`, a machine token
 * for its agents (startBranchCoordinator); for the corpus benchmarks also
 * base.img / next.img published as `corpus@v1` / `corpus@v2` with the delta
 * pack built, skipped when WORK already holds them (the minutes-long delta pack).
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { createPublishClient } from '../../client/publish-client.ts'

/** A started coordinator with a policy and a machine token for group `branch`. */
export interface BranchCoordinator {
  coordinator: Coordinator
  /** Machine token file for group `branch`. */
  tokenFile: string
  /** Calls the admin API (JSON in and out). */
  admin: (method: string, path: string, body?: unknown) => Promise<any>
}

/** A started coordinator holding the corpus. */
export interface CorpusCoordinator extends BranchCoordinator {
  /** Seconds spent publishing and building the delta pack (0 when reused). */
  publishSeconds: number
}

/**
 * Starts the coordinator under `work` with group `branch` allowed every image (LAN sharing on, `maxPeers`,
 * default 8) and a machine token for it in WORK/agent.token. Stops it again if the set-up fails.
 */
export async function startBranchCoordinator (init: { work: string, maxPeers?: number, config?: Record<string, unknown> }): Promise<BranchCoordinator> {
  const coordinator = createCoordinator({ dataDir: join(init.work, 'coordinator'), listen: '127.0.0.1:0', logLevel: 'error', config: init.config })
  await coordinator.start()
  try {
    const admin = async (method: string, path: string, body?: unknown): Promise<any> => {
      const res = await fetch(coordinator.url + path, { method, headers: { authorization: `Bearer ${coordinator.adminToken}`, 'content-type': 'application/json' }, body: body == null ? undefined : JSON.stringify(body) })
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`)
      return await res.json()
    }
    await admin('PUT', '/v1/policies/branch', { images: ['*'], wanLimitBps: 0, lanSharing: true, lanUploadBps: 0, maxPeers: init.maxPeers ?? 8, updateWindow: null, indexFolders: {} })
    const token = await admin('POST', '/v1/tokens', { group: 'branch', name: 'bench' })
    const tokenFile = join(init.work, 'agent.token')
    await writeFile(tokenFile, token.token + '\n')
    return { coordinator, tokenFile, admin }
  } catch (err) {
    await coordinator.stop()
    throw err
  }
}

/** Starts the coordinator under `work` and publishes the corpus unless it already holds it. */
export async function startCorpusCoordinator (init: { work: string, corpus: string, maxPeers?: number, config?: Record<string, unknown> }): Promise<CorpusCoordinator> {
  const branch = await startBranchCoordinator(init)
  const { coordinator } = branch
  try {
    const publisher = createPublishClient({ coordinator: coordinator.url, token: coordinator.adminToken })
    const t = performance.now()
    const exists = async (v: string): Promise<boolean> => (await fetch(`${coordinator.url}/v1/images/corpus/versions/${v}/info`, { headers: { authorization: `Bearer ${coordinator.adminToken}` } })).ok
    if (!await exists('v1')) await publisher.publish(join(init.corpus, 'base.img'), { image: 'corpus', version: 'v1' })
    if (!await exists('v2')) await publisher.publish(join(init.corpus, 'next.img'), { image: 'corpus', version: 'v2' })
    await coordinator.images.whenIdle()
    await coordinator.segments.whenIdle()
    return { ...branch, publishSeconds: (performance.now() - t) / 1000 }
  } catch (err) {
    await coordinator.stop()
    throw err
  }
}
