/**
 * The rendezvous loop survives a coordinator restart: a refresh that fails
 * because the coordinator is away (real coordinator, stopped, then started
 * again on the same port and data dir) is tried again after
 * RENDEZVOUS_RETRY_MS, so the node is registered for its site again without
 * anyone calling refresh(); before, the loop ended at the first failure and
 * the node's registration lapsed for good.
 */
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCoordinatorClient, type CoordinatorClient } from '../../../peer-agent/coordinator-client.ts'
import { CoordinatorUnreachableError } from '../../../peer-agent/errors.ts'
import { RENDEZVOUS_RETRY_MS } from '../../../peer-agent/swarm/constants.ts'
import { createRendezvous } from '../../../peer-agent/swarm/rendezvous.ts'
import type { Swarm } from '../../../peer-agent/swarm/interface.ts'
import { tempDir, type TempDir } from '../../helpers/images.ts'
import { freePort } from '../../helpers/slapd.ts'
import { startTestCoordinator, type TestCoordinator } from '../harness.ts'
import { coordinatorKeys, startNode, testLog } from './helpers.ts'

let tmp: TempDir
let coord: TestCoordinator | undefined
let swarm: Swarm | undefined

beforeAll(async () => {
  tmp = await tempDir('trimswarm-rendezvous-retry-')
})

afterAll(async () => {
  await swarm?.stop()
  await coord?.stop()
  await tmp?.cleanup()
})

async function listed (client: CoordinatorClient, peerId: string): Promise<boolean> {
  return (await client.listPeers({ site: 'lab' })).peers.some(p => p.peerId === peerId)
}

describe('rendezvous after a coordinator restart', () => {
  it('registers again on its own once the coordinator is back', async () => {
    const listen = `127.0.0.1:${await freePort()}`
    coord = await startTestCoordinator(tmp.path, { listen })
    const url = coord.url
    const client = createCoordinatorClient({ logger: testLog() }, { url, auth: { tokenFile: coord.tokenFile }, retry: { attempts: 2, baseMs: 20 } })
    await client.me() // the token is read while the coordinator is up
    await coord.stop()
    coord = undefined

    swarm = (await startNode((await coordinatorKeys()).publicKeyRaw)).swarm
    const log = testLog()
    const rv = createRendezvous({ swarm, register: client.registerPeer, listPeers: client.listPeers, logger: log }, { site: 'lab' })
    try {
      // the coordinator is away past the client's retries: the caller hears of it ...
      await expect(rv.refresh()).rejects.toBeInstanceOf(CoordinatorUnreachableError)
      // ... and the loop tries again by itself once it is back
      coord = await startTestCoordinator(tmp.path, { listen })
      expect(coord.url).toBe(url)
      // a few retry periods, generous for a loaded machine
      const waitMs = RENDEZVOUS_RETRY_MS * 4 + 10_000
      const deadline = Date.now() + waitMs
      while (!await listed(client, swarm.peerId)) {
        if (Date.now() > deadline) throw new Error(`not registered again within ${waitMs} ms; log: ${log.lines.join('\n')}`)
        await sleep(100)
      }
    } finally {
      rv.stop()
    }
  }, 60_000)
})
