/**
 * Events arrive exactly once when an acknowledgement is lost: the coordinator
 * stores a batch, but the connection breaks before its answer reaches the agent
 * (the coordinator or the path to it died between send and ack). The agent keeps
 * the events (each with its id) until acked and sends them again, here through
 * the next URL of its list; the coordinator's ingestion, idempotent by event id,
 * stores each once.
 */
import { createServer, request as httpRequest, type Server } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCoordinatorClient } from '../../peer-agent/coordinator-client.ts'
import { createEventQueue } from '../../peer-agent/event-queue.ts'
import { silentLogger } from '../../peer-agent/interface.ts'
import type { TempDir } from '../helpers/images.ts'
import { startPublishedTestImage, type TestCoordinator } from './harness.ts'

let tmp: TempDir
let coord: TestCoordinator
let proxy: Server

beforeAll(async () => {
  ({ tmp, coord } = await startPublishedTestImage('trimswarm-event-ack-', { name: 'img', sizeMiB: 8, seed: 5 }))
})

afterAll(async () => {
  proxy?.closeAllConnections()
  proxy?.close()
  await coord?.stop()
  await tmp?.cleanup()
})

/** Forwards every request to `target`; for POST /v1/events it waits for the coordinator's answer, then cuts the connection instead of passing it on. */
async function ackLosingProxy (target: string): Promise<{ url: string, lost: () => number }> {
  let lost = 0
  proxy = createServer((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (d: Buffer) => parts.push(d))
    req.on('end', () => {
      const up = httpRequest(target + req.url, { method: req.method, headers: req.headers }, (r) => {
        if (req.url === '/v1/events') {
          r.resume()
          r.on('end', () => { lost++; req.socket.destroy() })
          return
        }
        res.writeHead(r.statusCode ?? 502, r.headers)
        r.pipe(res)
      })
      up.on('error', () => res.destroy())
      up.end(Buffer.concat(parts))
    })
  })
  await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(proxy.address() as { port: number }).port}`, lost: () => lost }
}

describe('events across a lost acknowledgement', () => {
  it('stored by the coordinator, ack lost: sent again through the next URL, stored once', async () => {
    const cut = await ackLosingProxy(coord.url)
    const token = coord.coordinator.adminToken
    const client = createCoordinatorClient({ logger: silentLogger }, { url: [cut.url, coord.url], auth: { token }, retry: { attempts: 2, baseMs: 10 } })
    const queue = createEventQueue({ client, logger: silentLogger }, { path: join(tmp.path, 'agent', 'events.jsonl'), agent: 'agent-ack', site: 'hq' })
    const e1 = await queue.record({ type: 'sync.started', image: 'ws', version: 'v1' })
    const e2 = await queue.record({ type: 'sync.completed', image: 'ws', version: 'v1', bytes: { local: 0, peers: 0, origin: 10 }, seconds: 1 })

    expect(await queue.flush()).toBe(2)
    expect(cut.lost()).toBe(1) // the first send was stored, its answer cut
    expect(await queue.pending()).toEqual([])
    const res = await fetch(`${coord.url}/v1/events`, { headers: { authorization: `Bearer ${token}` } })
    const stored = (await res.json()).events.map((e: { event: { id: string } }) => e.event.id)
    expect(stored.filter((id: string) => id === e1.id)).toHaveLength(1)
    expect(stored.filter((id: string) => id === e2.id)).toHaveLength(1)
  })

  it('events recorded while a flush rewrites the queue are kept, none lost', async () => {
    const token = coord.coordinator.adminToken
    const client = createCoordinatorClient({ logger: silentLogger }, { url: coord.url, auth: { token }, retry: { attempts: 2, baseMs: 10 } })
    const queue = createEventQueue({ client, logger: silentLogger }, { path: join(tmp.path, 'agent-race', 'events.jsonl'), agent: 'agent-race', site: 'hq' })
    const ids = new Set<string>()
    const record = async (): Promise<void> => { ids.add((await queue.record({ type: 'sync.started', image: 'ws', version: 'v1' })).id) }
    await record()
    // one event after another while flushes re-read and rewrite the file
    let recording = true
    const recorder = (async () => { while (recording) await record() })()
    for (let round = 0; round < 30; round++) await queue.flush()
    recording = false
    await recorder
    while ((await queue.pending()).length > 0) await queue.flush()
    const res = await fetch(`${coord.url}/v1/events?limit=1000`, { headers: { authorization: `Bearer ${token}` } })
    const stored = new Set((await res.json()).events.map((e: { event: { id: string } }) => e.event.id))
    const lost = [...ids].filter(id => !stored.has(id))
    expect(lost).toEqual([])
  })
})
