/**
 * Background LAN uploads (issue 18): a swarm node created with
 * backgroundUploads sends what it serves through the background controller,
 * timed by libp2p pings to the peer it serves; every byte still arrives
 * verified, and the policy's upload cap still holds beside it.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { Swarm } from '../../../peer-agent/swarm/interface.ts'
import { capabilityFor, coordinatorKeys, makeVersion, memoryProvider, startNode } from './helpers.ts'

const nodes: Swarm[] = []
afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => { await n.stop() })) })

async function node (...args: Parameters<typeof startNode>): ReturnType<typeof startNode> {
  const r = await startNode(...args)
  nodes.push(r.swarm)
  return r
}

async function fetchAll (seed: Swarm, me: Swarm, v: ReturnType<typeof makeVersion>, keys: Awaited<ReturnType<typeof coordinatorKeys>>): Promise<{ bytes: number, seconds: number }> {
  const t0 = performance.now()
  const session = me.createSession({
    image: 'desk', version: 'v1', manifest: v.manifest, capability: await capabilityFor(keys.privateKey, me.peerId),
    peers: [seed.getMultiaddrs()[0]],
    onChunk: async () => {}
  })
  await session.start()
  await session.done
  const r = { bytes: session.stats().bytesFromPeers, seconds: (performance.now() - t0) / 1000 }
  await session.close()
  return r
}

describe('background LAN uploads', () => {
  it('paces what a node serves with pings to the peer served, and every chunk still arrives', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(21, 40, 8)
    const total = v.chunks.reduce((n, c) => n + c.length, 0)
    const { swarm: seed, log } = await node(keys.publicKeyRaw, { backgroundUploads: true })
    seed.serve({ image: 'desk', version: 'v1', chunkCount: 40, provider: memoryProvider(v.chunks.entries()) })
    const { swarm: me } = await node(keys.publicKeyRaw)
    const got = await fetchAll(seed, me, v, keys)
    expect(got.bytes).toBe(total)
    // the pacer's status line: it pinged the peer over the swarm connection and set a rate
    expect(log.lines.some(l => /^background LAN uploads: [\d.]+ MB\/s allowed \(/.test(l)), log.lines.join('\n')).toBe(true)
  }, 60_000)

  it('a foreground node does not pace its uploads', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(22, 40, 8)
    const { swarm: seed, log } = await node(keys.publicKeyRaw)
    seed.serve({ image: 'desk', version: 'v1', chunkCount: 40, provider: memoryProvider(v.chunks.entries()) })
    const { swarm: me } = await node(keys.publicKeyRaw)
    await fetchAll(seed, me, v, keys)
    expect(log.lines.some(l => l.startsWith('background LAN uploads'))).toBe(false)
  }, 60_000)

  it('the upload cap still holds beside the background controller', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(23, 40, 8)
    const total = v.chunks.reduce((n, c) => n + c.length, 0)
    const rate = 400_000
    const { swarm: seed } = await node(keys.publicKeyRaw, { backgroundUploads: true, uploadBps: rate })
    seed.serve({ image: 'desk', version: 'v1', chunkCount: 40, provider: memoryProvider(v.chunks.entries()) })
    const { swarm: me } = await node(keys.publicKeyRaw)
    const got = await fetchAll(seed, me, v, keys)
    expect(got.bytes).toBe(total)
    // RATE_BURST_SECONDS (0.25 s) of burst on top of the rate
    expect(got.seconds).toBeGreaterThan((total - rate * 0.25) / rate * 0.9)
  }, 60_000)
})
