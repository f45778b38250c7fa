/**
 * Background LAN uploads (issue 18): a swarm node created with
 * backgroundUploads sends what it serves through the background controller,
 * timed by libp2p pings to the peer it serves; every byte still arrives
 * verified, and the policy's upload cap still holds beside it.
 */
import { describe, expect, it } from 'vitest'
import type { SwarmInit } from '../../../peer-agent/swarm/interface.ts'
import { capabilityFor, coordinatorKeys, makeVersion, memoryProvider, startNode } from './helpers.ts'

/** A seed started with `init` serves a 40-chunk version to one fresh peer; both are stopped after. */
async function serveOnce (seedInit: Partial<SwarmInit>, prngSeed: number): Promise<{ bytes: number, total: number, seconds: number, log: string[] }> {
  const keys = await coordinatorKeys()
  const v = makeVersion(prngSeed, 40, 8)
  const seed = await startNode(keys.publicKeyRaw, seedInit)
  const me = await startNode(keys.publicKeyRaw)
  try {
    seed.swarm.serve({ image: 'desk', version: 'v1', chunkCount: 40, provider: memoryProvider(v.chunks.entries()) })
    const t0 = performance.now()
    const session = me.swarm.createSession({
      image: 'desk', version: 'v1', manifest: v.manifest, capability: await capabilityFor(keys.privateKey, me.swarm.peerId),
      peers: [seed.swarm.getMultiaddrs()[0]],
      onChunk: async () => {}
    })
    await session.start()
    await session.done
    const seconds = (performance.now() - t0) / 1000
    const bytes = session.stats().bytesFromPeers
    await session.close()
    return { bytes, total: v.chunks.reduce((n, c) => n + c.length, 0), seconds, log: seed.log.lines }
  } finally {
    await Promise.all([seed.swarm.stop(), me.swarm.stop()])
  }
}

describe('background LAN uploads', () => {
  it('paces what a node serves with pings to the peer served, and every chunk still arrives', async () => {
    const r = await serveOnce({ backgroundUploads: true }, 21)
    expect(r.bytes).toBe(r.total)
    // the pacer's status line: it pinged the peer over the swarm connection and set a rate
    expect(r.log.some(l => /^background LAN uploads: [\d.]+ MB\/s allowed \(/.test(l)), r.log.join('\n')).toBe(true)
  }, 60_000)

  it('a foreground node does not pace its uploads', async () => {
    const r = await serveOnce({}, 22)
    expect(r.bytes).toBe(r.total)
    expect(r.log.some(l => l.startsWith('background LAN uploads'))).toBe(false)
  }, 60_000)

  it('the upload cap still holds beside the background controller', async () => {
    const rate = 400_000
    const r = await serveOnce({ backgroundUploads: true, uploadBps: rate }, 23)
    expect(r.bytes).toBe(r.total)
    // RATE_BURST_SECONDS (0.25 s) of burst on top of the rate
    expect(r.seconds).toBeGreaterThan((r.total - rate * 0.25) / rate * 0.9)
  }, 60_000)
})
