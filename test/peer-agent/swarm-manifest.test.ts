/**
 * Signed manifests within a site, end to end: `agent sync` processes take the
 * manifest from a peer (one of them downloads it from the origin), and a peer
 * that offers a forged manifest, or another version's genuine one, is not
 * believed: the agent reports it (peer.banned), takes the manifest elsewhere
 * and writes the right image.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { manifestCidOf } from '../../chunker/blake3.ts'
import { decodeManifest, encodeManifest } from '../../protocol/manifest.ts'
import { decodeEnvelope, openSignedManifest, signManifest, importPublicKey } from '../../protocol/signed-manifest.ts'
import { createSwarm } from '../../peer-agent/swarm/swarm.ts'
import type { Swarm } from '../../peer-agent/swarm/interface.ts'
import { b3sumFile, makeTestImage, makeUpdatedImage, tempDir, type TempDir, type TestImage, type UpdatedImage } from '../helpers/images.ts'
import { runAgent, spawnAgent, startTestCoordinator, type TestCoordinator } from './harness.ts'

let tmp: TempDir
let coord: TestCoordinator
let base: TestImage
let next: UpdatedImage
let token: string

beforeAll(async () => {
  tmp = await tempDir('trimswarm-swarm-manifest-')
  base = await makeTestImage(tmp.path, { name: 'base', sizeMiB: 8, files: 20, seed: 61, dataKiB: 3 * 1024 })
  next = await makeUpdatedImage(tmp.path, base, { name: 'next', seed: 62 })
  coord = await startTestCoordinator(tmp.path)
  await coord.publish('ws', 'v1', base.path)
  await coord.publish('ws', 'v2', next.path)
  token = (await readFile(coord.tokenFile, 'utf8')).trim()
}, 60_000)

afterAll(async () => {
  await coord?.stop()
  await tmp?.cleanup()
})

async function api (method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(coord.url + path, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body == null ? undefined : JSON.stringify(body) })
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`)
  return res.headers.get('content-type')?.includes('json') === true ? await res.json() : new Uint8Array(await res.arrayBuffer())
}

function args (name: string, url = coord.url): string[] {
  return ['--coordinator', url, '--token-file', coord.tokenFile, '--data', join(tmp.path, `${name}-data`), '--out', join(tmp.path, name, 'ws.img'),
    '--json', '--verbose', '--no-index', '--retries', '2', '--retry-delay', '50', '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--linger', '5']
}

/** A swarm node of site `site` registered at the coordinator for ws@`version`, offering `envelope` as that version's manifest. */
async function liar (site: string, version: string, envelope: Uint8Array): Promise<Swarm> {
  const key = await api('GET', '/v1/key')
  const node = await createSwarm({}, { coordinatorKey: Uint8Array.from(Buffer.from(key.publicKey, 'base64')), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, dht: false })
  node.holdManifest('ws', version, envelope)
  await api('POST', '/v1/peers', { peerId: node.peerId, multiaddrs: node.getMultiaddrs(), site, image: 'ws', version })
  return node
}

async function bannedEvents (peerId: string): Promise<any[]> {
  const res = await fetch(`${coord.url}/v1/events?type=peer.banned&limit=100`, { headers: { authorization: `Bearer ${coord.coordinator.adminToken}` } })
  const body = await res.json() as { events: Array<{ event: any }> }
  return body.events.map(e => e.event).filter(e => e.peerId === peerId)
}

describe('signed manifests from LAN peers', () => {
  it('agents that start together download the manifest from the origin once', async () => {
    const servedBefore = coord.coordinator.images.stats().bytesServed.manifest
    const envelope = await api('GET', '/v1/images/ws/versions/v1') as Uint8Array
    const names = ['m1', 'm2', 'm3']
    const runs = await Promise.all(names.map(async n => await spawnAgent(['sync', 'ws@v1', ...args(n), '--site', 'one']).done))
    for (const r of runs) expect(r.code, r.stderr).toBe(0)
    for (const n of names) expect(await b3sumFile(join(tmp.path, n, 'ws.img'))).toBe(await b3sumFile(base.path))
    const downloaded = runs.filter(r => r.stderr.includes('this agent downloads the manifest'))
    const fromPeer = runs.filter(r => /manifest of ws@v1 from peer /.test(r.stderr))
    expect(downloaded.length, runs.map(r => r.stderr).join('\n----\n')).toBe(1)
    expect(fromPeer.length).toBe(2)
    // the coordinator served the manifest twice: once to this test, once to the one agent
    expect(coord.coordinator.images.stats().bytesServed.manifest - servedBefore).toBe(2 * envelope.length)
  }, 120_000)

  it('a peer offering a forged manifest or another version\'s is reported and not believed', async () => {
    const v1Envelope = await api('GET', '/v1/images/ws/versions/v1') as Uint8Array
    const v2Envelope = await api('GET', '/v1/images/ws/versions/v2') as Uint8Array
    // forged: v2's manifest with one chunk digest changed, signed by a key that is not the coordinator's
    const other = await crypto.subtle.generateKey('Ed25519', true, ['sign', 'verify']) as CryptoKeyPair
    const m = decodeManifest(decodeEnvelope(v2Envelope).manifest)
    m.chunks[0].digest[0] ^= 0xff
    const forged = await signManifest(encodeManifest(m), other.privateKey)
    const cases = [{ site: 'forged', envelope: forged, why: /does not verify|signature/i }, { site: 'replay', envelope: v1Envelope, why: /manifest of ws@v1/ }]
    const key = await importPublicKey(Uint8Array.from(Buffer.from((await api('GET', '/v1/key')).publicKey, 'base64')))
    expect(manifestCidOf((await openSignedManifest(v1Envelope, key)).manifestBytes).toString()).not.toBe((await api('GET', '/v1/images/ws/versions/v2/info')).manifestCid)
    for (const c of cases) {
      const node = await liar(c.site, 'v2', c.envelope)
      try {
        const name = `liar-${c.site}`
        const r = await runAgent(['sync', 'ws@v2', ...args(name), '--site', c.site])
        expect(r.code, r.stderr).toBe(0)
        expect(await b3sumFile(join(tmp.path, name, 'ws.img'))).toBe(await b3sumFile(next.path))
        expect(r.stderr).toMatch(new RegExp(`peer ${node.peerId} sent a manifest that does not verify`))
        expect(r.stderr).toContain('this agent downloads the manifest')
        const banned = await bannedEvents(node.peerId)
        expect(banned.length, c.site).toBe(1)
        expect(banned[0].error).toMatch(c.why)
      } finally {
        await node.stop()
      }
    }
  }, 120_000)
})
