import { afterEach, describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { MANIFEST_PROTOCOL } from '../../../protocol/constants.ts'
import { encodeManifest } from '../../../protocol/manifest.ts'
import { decodeManifestAnswer, encodeManifestRequest, MAX_MANIFEST_REQUEST_BYTES } from '../../../protocol/manifest-exchange.ts'
import { importPublicKey, openSignedManifest, signManifest } from '../../../protocol/signed-manifest.ts'
import { pushVarint } from '../../../protocol/varint.ts'
import { MANIFEST_HELD_VERSIONS } from '../../../peer-agent/swarm/constants.ts'
import type { Swarm } from '../../../peer-agent/swarm/interface.ts'
import { capabilityFor, coordinatorKeys, makeVersion, startNode } from './helpers.ts'

const nodes: Swarm[] = []
afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => { await n.stop() })) })

async function node (...args: Parameters<typeof startNode>): ReturnType<typeof startNode> {
  const r = await startNode(...args)
  nodes.push(r.swarm)
  return r
}

/** Sends raw bytes on MANIFEST_PROTOCOL and returns what comes back until the peer closes. */
async function raw (from: Swarm, to: Swarm, bytes: Uint8Array): Promise<Uint8Array> {
  const stream = await from.libp2p.dialProtocol(multiaddr(to.getMultiaddrs()[0]), MANIFEST_PROTOCOL)
  stream.send(bytes)
  await stream.close()
  const parts: Uint8Array[] = []
  for await (const c of stream) parts.push(c.subarray())
  return Buffer.concat(parts)
}

describe('signed manifests between peers (MANIFEST_PROTOCOL)', () => {
  it('a peer with a capability gets the held envelope, FETCHING while the holder downloads it, NOT_HELD otherwise', async () => {
    const keys = await coordinatorKeys()
    const v = makeVersion(1, 20, 4)
    const envelope = await signManifest(encodeManifest(v.manifest), keys.privateKey)
    const { swarm: holder } = await node(keys.publicKeyRaw)
    const { swarm: asker } = await node(keys.publicKeyRaw)
    const cap = await capabilityFor(keys.privateKey, asker.peerId)
    const addr = holder.getMultiaddrs()[0]

    expect(await asker.askManifest(addr, cap)).toEqual({ status: 'not-held' })
    const done = holder.fetchingManifest('desk', 'v1')
    expect(await asker.askManifest(addr, cap)).toEqual({ status: 'fetching' })
    done()
    done() // idempotent
    expect(await asker.askManifest(addr, cap)).toEqual({ status: 'not-held' })

    holder.holdManifest('desk', 'v1', envelope)
    const got = await asker.askManifest(holder.peerId, cap) // by peer id: the connection exists now
    expect(got.status).toBe('manifest')
    if (got.status !== 'manifest') return
    expect(Buffer.compare(got.envelope, envelope)).toBe(0)
    const opened = await openSignedManifest(got.envelope, await importPublicKey(keys.publicKeyRaw))
    expect(opened.manifest.version).toBe('v1')

    // a capability for another version of the image: not held there
    expect(await asker.askManifest(addr, await capabilityFor(keys.privateKey, asker.peerId, 'desk', 'v2'))).toEqual({ status: 'not-held' })
  })

  it('keeps only the last MANIFEST_HELD_VERSIONS envelopes', async () => {
    const keys = await coordinatorKeys()
    const { swarm: holder } = await node(keys.publicKeyRaw)
    const { swarm: asker } = await node(keys.publicKeyRaw)
    for (let k = 0; k <= MANIFEST_HELD_VERSIONS; k++) {
      const v = makeVersion(10 + k, 3, 2, 'desk', `v${k}`)
      holder.holdManifest('desk', `v${k}`, await signManifest(encodeManifest(v.manifest), keys.privateKey))
    }
    const addr = holder.getMultiaddrs()[0]
    expect((await asker.askManifest(addr, await capabilityFor(keys.privateKey, asker.peerId, 'desk', 'v0'))).status).toBe('not-held')
    expect((await asker.askManifest(addr, await capabilityFor(keys.privateKey, asker.peerId, 'desk', `v${MANIFEST_HELD_VERSIONS}`))).status).toBe('manifest')
  })

  it('without a valid capability a peer learns nothing; malformed or oversized requests are refused and the node keeps answering', async () => {
    const keys = await coordinatorKeys()
    const other = await coordinatorKeys()
    const v = makeVersion(2, 10, 4)
    const { swarm: holder, log } = await node(keys.publicKeyRaw)
    holder.holdManifest('desk', 'v1', await signManifest(encodeManifest(v.manifest), keys.privateKey))
    holder.fetchingManifest('desk', 'v2')
    const { swarm: intruder } = await node(keys.publicKeyRaw)
    const addr = holder.getMultiaddrs()[0]
    const cases: Record<string, Uint8Array> = {
      'for another peer id': await capabilityFor(keys.privateKey, holder.peerId),
      expired: await capabilityFor(keys.privateKey, intruder.peerId, 'desk', 'v1', -3600),
      forged: await capabilityFor(other.privateKey, intruder.peerId),
      'forged, for the version being fetched': await capabilityFor(other.privateKey, intruder.peerId, 'desk', 'v2'),
      garbage: new Uint8Array([0xa1, 0x61, 0x78, 0x01])
    }
    for (const [what, cap] of Object.entries(cases)) {
      expect(await intruder.askManifest(addr, cap), what).toEqual({ status: 'refused', reason: 'capability refused' })
    }
    // oversized length prefix: refused before the body is read
    const huge: number[] = []
    pushVarint(huge, MAX_MANIFEST_REQUEST_BYTES + 1)
    const oversized = decodeManifestAnswer((await raw(intruder, holder, Uint8Array.from([...huge, 0x01, 0x02]))).subarray(1))
    expect(oversized.status).toBe('refused')
    // unknown request type
    const unknown = await raw(intruder, holder, Uint8Array.from([3, 0x09, 0xaa, 0xbb]))
    expect(decodeManifestAnswer(unknown.subarray(1))).toMatchObject({ status: 'refused', reason: expect.stringContaining('unknown manifest request type') })
    // the stream ends before a whole frame
    expect(decodeManifestAnswer((await raw(intruder, holder, Uint8Array.from([50, 0x01, 0x02]))).subarray(1)).status).toBe('refused')
    expect(log.lines.filter(l => l.includes('refused manifest request')).length).toBe(5)
    expect(log.lines.filter(l => l.includes('closing manifest stream')).length).toBe(3)
    // still answering a good request
    const ok = await intruder.askManifest(addr, await capabilityFor(keys.privateKey, intruder.peerId))
    expect(ok.status).toBe('manifest')
    // an asker refuses an answer over its limit too (encodeManifestRequest checks its own side)
    expect(() => encodeManifestRequest(new Uint8Array(MAX_MANIFEST_REQUEST_BYTES))).toThrow(/capability of/)
  })
})
