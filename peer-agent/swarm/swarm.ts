/**
 * A LAN swarm node: libp2p over TCP with noise and yamux, identify, a private
 * kad-dht (DHT_PROTOCOL_PREFIX) for provider records per image version, and
 * optional mDNS; serves and fetches chunks on BLOCKS_PROTOCOL and signed
 * manifests on MANIFEST_PROTOCOL.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair, privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import type { Libp2p, PeerDiscovery } from '@libp2p/interface'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping, type Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { BLOCKS_PROTOCOL, BLOCKS_PROTOCOL_PARTIAL, BLOCKS_PROTOCOLS, DHT_PROTOCOL_PREFIX, MANIFEST_PROTOCOL, RAW_CODE } from '../../protocol/constants.ts'
import { importPublicKey } from '../../protocol/signed-manifest.ts'
import { createUploadPacer, type PeerPing } from '../background-pacer.ts'
import { createBlockServer } from './block-server.ts'
import { DEFAULT_LISTEN, DEFAULT_MAX_PEERS, DHT_KEY_PREFIX, STREAM_IDLE_TIMEOUT_MS } from './constants.ts'
import type { PeerAddress, Swarm, SwarmComponents, SwarmInit, SwarmLogger } from './interface.ts'
import { createManifestExchange } from './manifest-exchange.ts'
import { swarmNoiseCrypto } from './noise-crypto.ts'
import { peerIdOf } from './peer-id.ts'
import { describeError, peerLog } from './peer-log.ts'
import { createSwarmSession } from './session.ts'
import { SwarmNotStartedError } from './errors.ts'

const defaultLogger: SwarmLogger = { info: () => {}, warn: (msg) => { process.stderr.write(`warning: ${msg}\n`) } }

/** The DHT key (a CID) under which peers announce that they hold image@version. */
export async function imageVersionKey (image: string, version: string): Promise<CID> {
  return CID.createV1(RAW_CODE, await sha256.digest(new TextEncoder().encode(`${DHT_KEY_PREFIX}${image}/${version}`)))
}

/** Creates and starts a swarm node. */
export async function createSwarm (components: SwarmComponents, init: SwarmInit): Promise<Swarm> {
  const logger = components.logger ?? defaultLogger
  const coordinatorKey = init.coordinatorKey instanceof Uint8Array ? await importPublicKey(init.coordinatorKey) : init.coordinatorKey
  const privateKey = init.privateKey != null ? privateKeyFromProtobuf(init.privateKey) : await generateKeyPair('Ed25519')
  const useDht = init.dht ?? true
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  if (init.mdns ?? true) peerDiscovery.push(mdns({ serviceTag: 'trimswarm.local' }))
  const services: Record<string, any> = { identify: identify(), ping: ping() }
  if (useDht) {
    services.dht = kadDHT({
      protocol: `${DHT_PROTOCOL_PREFIX}/kad/1.0.0`,
      clientMode: false,
      // A LAN DHT: keep private and loopback addresses (the public mappers would drop them).
      peerInfoMapper: passthroughMapper
    })
  }
  const node: Libp2p = await createLibp2p({
    privateKey,
    addresses: { listen: init.listen ?? [DEFAULT_LISTEN] },
    transports: [tcp()],
    connectionEncrypters: [noise({ crypto: swarmNoiseCrypto })],
    streamMuxers: [yamux()],
    peerDiscovery,
    services,
    start: false
  })
  const pingPeer: PeerPing = async (peer, options) => { await (node.services as { ping: Ping }).ping.ping(peerIdFromString(peer), options) }
  const uploadPacer = init.backgroundUploads === true ? createUploadPacer({ ping: pingPeer, logger }) : undefined
  const server = createBlockServer({ coordinatorKey, logger, uploadPacer }, { uploadBps: init.uploadBps, maxPeers: init.maxPeers })
  const manifests = createManifestExchange({ libp2p: node, coordinatorKey, logger })
  // the block-exchange versions this node serves and proposes, most preferred first
  const blockProtocols = init.compressChunks === false
    ? [BLOCKS_PROTOCOL]
    : init.partialChunks === false ? BLOCKS_PROTOCOLS.filter(id => id !== BLOCKS_PROTOCOL_PARTIAL) : BLOCKS_PROTOCOLS
  let running = false

  // Dial what mDNS finds (libp2p only stores it).
  node.addEventListener('peer:discovery', (evt) => {
    if (!running) return
    node.dial(evt.detail.id).catch(err => {
      peerLog(logger, err, 'info')(`swarm: cannot dial discovered peer ${evt.detail.id.toString()}: ${describeError(err)}`)
    })
  })

  async function addPeers (addrs: string[], options: { signal?: AbortSignal } = {}): Promise<number> {
    if (!running) throw new SwarmNotStartedError('swarm is not started')
    const results = await Promise.allSettled(addrs.map(async a => {
      const ma = multiaddr(a)
      if (peerIdOf(ma) === node.peerId.toString()) return false
      await node.dial(ma, options)
      return true
    }))
    let ok = 0
    results.forEach((r, k) => {
      if (r.status === 'fulfilled') { if (r.value) ok++ } else peerLog(logger, r.reason, 'info')(`swarm: cannot dial ${addrs[k]}: ${describeError(r.reason)}`)
    })
    return ok
  }

  async function announce (image: string, version: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!useDht) return
    await node.contentRouting.provide(await imageVersionKey(image, version), options)
  }

  async function * findProviders (image: string, version: string, options: { signal?: AbortSignal } = {}): AsyncIterable<PeerAddress> {
    if (!useDht) return
    for await (const p of node.contentRouting.findProviders(await imageVersionKey(image, version), options)) {
      if (p.id.equals(node.peerId)) continue
      yield { peerId: p.id.toString(), multiaddrs: p.multiaddrs.map(m => m.toString()) }
    }
  }

  const swarm: Swarm = {
    get peerId () { return node.peerId.toString() },
    libp2p: node,
    async start () {
      if (running) return
      await node.handle([...blockProtocols], (stream, connection) => {
        stream.inactivityTimeout = STREAM_IDLE_TIMEOUT_MS
        server.handle(stream, connection).catch(err => { logger.warn(`swarm: inbound stream failed: ${describeError(err)}`) })
      }, { maxInboundStreams: 2 * (init.maxPeers ?? DEFAULT_MAX_PEERS) + 8, runOnLimitedConnection: false })
      await node.handle(MANIFEST_PROTOCOL, (stream, connection) => {
        manifests.handle(stream, connection).catch(err => { logger.warn(`swarm: inbound manifest stream failed: ${describeError(err)}`) })
      }, { maxInboundStreams: 4, runOnLimitedConnection: false })
      await node.start()
      running = true
      if ((init.bootstrap ?? []).length > 0) await addPeers(init.bootstrap ?? [])
    },
    async stop () {
      if (!running) return
      running = false
      server.stop()
      await uploadPacer?.stop()
      await node.stop()
    },
    getMultiaddrs: () => node.getMultiaddrs().map(m => m.toString()),
    addPeers,
    announce,
    findProviders,
    serve: (serveInit) => server.serve(serveInit),
    holdManifest: (image, version, envelope) => { manifests.hold(image, version, envelope) },
    fetchingManifest: (image, version) => manifests.fetching(image, version),
    askManifest (peer, capability, options) {
      if (!running) throw new SwarmNotStartedError('swarm is not started')
      return manifests.ask(peer, capability, options)
    },
    createSession (sessionInit) {
      if (!running) throw new SwarmNotStartedError('swarm is not started')
      const dht = useDht ? { findProviders, announce } : {}
      return createSwarmSession({ libp2p: node, server, logger, blockProtocols, ...dht }, sessionInit)
    },
    setCaps: (caps) => { server.setCaps(caps) },
    stats: () => server.stats()
  }
  await swarm.start()
  return swarm
}
