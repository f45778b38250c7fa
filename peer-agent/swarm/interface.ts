/** Types of the LAN swarm: what the sync engine implements (ChunkProvider) and calls (Swarm, SwarmSession). */
import type { Libp2p } from '@libp2p/interface'
import type { Manifest } from '../../protocol/manifest.ts'
import type { ManifestAnswer } from '../../protocol/manifest-exchange.ts'
import type { AbortOptions, Logger } from '../../utils/interface.ts'

export type { AbortOptions }

/**
 * Where the swarm writes its log lines: the info and warn levels of the shared structured Logger,
 * and its debug level when given (routine peer events: a peer that left, a reset stream, a
 * capability of another update; shown only when asked for).
 */
export type SwarmLogger = Pick<Logger, 'info' | 'warn'> & Partial<Pick<Logger, 'debug'>>

/**
 * The verified chunks of one image version on this machine, as the sync
 * engine holds them (temp file while syncing, output file once done).
 */
export interface ChunkProvider {
  /** Whether chunk `index` (manifest order) is verified and can be read now. */
  has: (index: number) => boolean
  /** The bytes of chunk `index`; called only after has(index). */
  read: (index: number, options?: AbortOptions) => Promise<Uint8Array>
}

/** A peer's address as discovery finds it. */
export interface PeerAddress {
  peerId: string
  multiaddrs: string[]
}

/** What createSwarm needs besides options. */
export interface SwarmComponents {
  logger?: SwarmLogger
}

/** Options of createSwarm; defaults in peer-agent/swarm/constants.ts. */
export interface SwarmInit {
  /** The coordinator's raw 32-byte Ed25519 public key (or imported key): verifies capabilities offline. */
  coordinatorKey: Uint8Array | CryptoKey
  /** libp2p identity (protobuf-encoded private key, `privateKeyToProtobuf`); a fresh one when absent. Persist it to keep the peer id. */
  privateKey?: Uint8Array
  /** Multiaddrs to listen on; default DEFAULT_LISTEN (all interfaces, random port). */
  listen?: string[]
  /** Discover peers by multicast DNS (default true; off where multicast does not work, e.g. loopback tests). */
  mdns?: boolean
  /** Join the private kad-dht (DHT_PROTOCOL_PREFIX) for provider records per image version (default true). */
  dht?: boolean
  /** Peer multiaddrs (with /p2p/ id) to dial at start, e.g. from the coordinator's GET /v1/peers. */
  bootstrap?: string[]
  /** LAN upload cap in bytes per second across all peers (policy lanUploadBps; 0 = none). */
  uploadBps?: number
  /** Peers served at once (policy maxPeers; 0 or absent = DEFAULT_MAX_PEERS). */
  maxPeers?: number
  /** Uploads yield to other traffic (background mode, peer-agent/background-pacer.ts createUploadPacer); the upload cap still applies. */
  backgroundUploads?: boolean
  /**
   * Offer and accept zstd-compressed chunks (BLOCKS_PROTOCOL_ZSTD, default true); false speaks only
   * BLOCKS_PROTOCOL, as agents before it did.
   */
  compressChunks?: boolean
  /**
   * Offer and accept requests for only some blocks of a chunk (BLOCKS_PROTOCOL_PARTIAL, default true;
   * needs compressChunks); false speaks BLOCKS_PROTOCOL_ZSTD and BLOCKS_PROTOCOL, as agents before it did.
   */
  partialChunks?: boolean
}

/** Session and swarm events, for the agent's events and logs. */
export type SwarmEvent =
  | { type: 'peer.connected', peerId: string }
  | { type: 'peer.dropped', peerId: string, reason: string }
  /** A peer sent a chunk that failed verification: disconnected, banned for the session; report it as `peer.banned`. */
  | { type: 'peer.banned', peerId: string, index: number, reason: string }

/** What one session fetches and how it reports. */
export interface SwarmSessionInit extends AbortOptions {
  image: string
  version: string
  /** The verified manifest of image@version (chunk lengths and digests verify every received chunk). */
  manifest: Manifest
  /** This peer's capability for image@version (from POST /v1/capabilities), presented in HELLO. */
  capability: Uint8Array
  /** Chunk indices to fetch (default: all). Chunks the engine already holds are left out. */
  need?: Iterable<number>
  /** When given, this peer serves the version while it downloads (in-progress sharing): HAVE_UPDATE goes out as chunks arrive or are marked had. */
  provider?: ChunkProvider
  /** Called with every verified chunk from a peer; resolve once it is written (then it is announced to peers). Give this or onChunkParts. */
  onChunk?: (index: number, bytes: Uint8Array, peerId: string) => Promise<void>
  /**
   * Called instead of onChunk when given: the verified chunk as it arrived, one
   * or more pieces in order (views of the received data, never copied; write
   * them with one writev), which saves joining a chunk that spans transport
   * messages (docs/BENCHMARKS.md "swarm"). The pieces stay valid after it resolves.
   */
  onChunkParts?: (index: number, parts: readonly Uint8Array[], peerId: string) => Promise<void>
  /**
   * The blocks of chunk `index` the engine lacks, as a mask (bit k, least significant first: the
   * chunk's block k), when it holds some of them already (e.g. from the host's files); undefined
   * when it lacks them all. Given with onChunkBlocks, a peer speaking BLOCKS_PROTOCOL_PARTIAL is
   * asked for only those blocks (WANT_BLOCKS).
   */
  lackingBlocks?: (index: number) => Uint8Array | undefined
  /**
   * Called with the blocks a peer sent for a WANT_BLOCKS of `mask`, in order, decoded within their
   * length and not checked yet: the engine checks each against the manifest's block prefix, writes
   * them beside the blocks it holds and verifies the whole chunk (length and full BLAKE3), all
   * before it resolves. `verified`: the chunk is complete and verified (then it is announced to
   * peers); `bad`: a block does not match its prefix (the peer is banned); `unverified`: the blocks
   * matched but the chunk does not verify (it is asked for whole).
   */
  onChunkBlocks?: (index: number, mask: Uint8Array, blocks: Uint8Array, peerId: string) => 'verified' | 'bad' | 'unverified'
  /** Events: peer.connected, peer.dropped, peer.banned. */
  onEvent?: (event: SwarmEvent) => void
  /** Extra peer multiaddrs (with /p2p/) to try for this session. */
  peers?: string[]
  /** Drop a peer with requests in flight that sends nothing for this long (default STALL_TIMEOUT_MS). */
  stallTimeoutMs?: number
  /** Drop a peer that leaves one request unanswered this long (default REQUEST_TIMEOUT_MS). */
  requestTimeoutMs?: number
  /** Wait this long before dialling a dropped or refusing peer again (default PEER_RETRY_BACKOFF_MS; doubled for each stall of the same peer). */
  retryBackoffMs?: number
}

/** Counters of one session. */
export interface SwarmSessionStats {
  /** Chunk bytes received from peers and verified (the `peers` byte source). */
  bytesFromPeers: number
  /** The same chunks' bytes as they came over the wire: smaller where a peer sent them zstd-compressed. */
  wireBytesFromPeers: number
  chunksFromPeers: number
  /** Of those, chunks completed from only the blocks we lacked (WANT_BLOCKS); their bytes count as those blocks'. */
  partsFromPeers: number
  /** Verified chunk bytes received per peer id. */
  byPeer: Record<string, number>
  /** Bytes received twice (endgame duplicates) and discarded. */
  duplicateBytes: number
  /** Chunks handed to the engine for the origin by originChunks(). */
  chunksForOrigin: number
  banned: string[]
}

/**
 * One sync's use of the swarm. The engine loop: start(); then until `done`,
 * fetch originChunks() from the origin and markHave() each when written,
 * else waitForChange(); close() at the end.
 */
export interface SwarmSession {
  /** Dials known peers and starts fetching. */
  start: () => Promise<void>
  /** The engine holds chunk `index` now (origin, disk, any time after start): stop wanting it and announce it to peers. */
  markHave: (index: number) => void
  /** Gives back chunks from originChunks() that the engine failed to fetch. */
  release: (indices: number[]) => void
  /**
   * Peers the rendezvous lists now (multiaddrs with /p2p/), looked up again after start(): those new to the
   * session are dialled, and while the settle wait lasts waited for like the peers listed at the start.
   */
  listed: (addrs: readonly string[]) => void
  /**
   * Chunks the engine should fetch from the origin now (at most `max`): no
   * connected peer has them, none is in flight, and by the claim rule this
   * peer owns them or their owner stalled (docs/ARCHITECTURE.md "Swarm").
   * They are reserved until markHave() or release().
   */
  originChunks: (max?: number) => number[]
  /** Connected peers (not banned) that hold chunk `index` now. */
  availability: (index: number) => number
  /** Chunks still needed (wanted, in flight or reserved for the origin). */
  remaining: () => number
  /** Resolves at the next change (chunk received, have-map update, peer joined or left) or after `timeoutMs`. */
  waitForChange: (options?: AbortOptions & { timeoutMs?: number }) => Promise<void>
  /** Resolves when no chunk remains. */
  readonly done: Promise<void>
  stats: () => SwarmSessionStats
  /** Peer ids the session fetches from now. */
  peers: () => string[]
  /** Closes every stream; the version stays served (as complete or not) only if the engine serves it separately. */
  close: () => Promise<void>
}

/** A version this peer serves. */
export interface ServeInit {
  image: string
  version: string
  chunkCount: number
  provider: ChunkProvider
  /** Whether this peer is syncing the version now (HAVE flag ACTIVE: it takes part in the origin claim rule). */
  active?: boolean
}

/** Handle on a served version. */
export interface ServedVersion {
  /** Tells subscribed peers these chunks are now available (HAVE_UPDATE). */
  announce: (indices: number[]) => void
  /** Changes the ACTIVE flag (re-sends HAVE). */
  setActive: (active: boolean) => void
  /** Stops serving: open streams for it are closed. */
  close: () => void
}

/** What this node served to peers since it started (chunk payload bytes, not framing). */
export interface SwarmServeStats {
  /** Chunk bytes sent to peers, all versions. */
  bytesServed: number
  /** The same chunks' bytes as they went on the wire: smaller where they went zstd-compressed (BLOCKS_PROTOCOL_ZSTD). */
  bytesSent: number
  /** Chunk bytes sent per `image@version`. */
  byVersion: Record<string, number>
}

/** A peer-to-peer node of the LAN swarm. */
export interface Swarm {
  readonly peerId: string
  /** The libp2p node (benchmarks and advanced use). */
  readonly libp2p: Libp2p
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Listening multiaddrs with /p2p/ (to register at the coordinator). */
  getMultiaddrs: () => string[]
  /** Dials peers (from the coordinator rendezvous); returns how many connected. Failures are logged, not thrown. */
  addPeers: (multiaddrs: string[], options?: AbortOptions) => Promise<number>
  /** Publishes a DHT provider record for image@version. */
  announce: (image: string, version: string, options?: AbortOptions) => Promise<void>
  /** Peers with a DHT provider record for image@version. */
  findProviders: (image: string, version: string, options?: AbortOptions) => AsyncIterable<PeerAddress>
  /** Serves a version's chunks to peers presenting a capability for it. */
  serve: (init: ServeInit) => ServedVersion
  /** Answers peers with a capability for image@version with this signed manifest (MANIFEST_PROTOCOL; the last MANIFEST_HELD_VERSIONS kept). */
  holdManifest: (image: string, version: string, envelope: Uint8Array) => void
  /** Marks that this node is downloading image@version's manifest from the origin (peers that ask are told FETCHING); returns the function that ends it. */
  fetchingManifest: (image: string, version: string) => () => void
  /** Asks one peer (multiaddr with /p2p/, or a connected peer id) for the manifest its capability names; the envelope comes back unverified. */
  askManifest: (peer: string, capability: Uint8Array, options?: AbortOptions) => Promise<ManifestAnswer>
  /** Starts fetching a version from peers. */
  createSession: (init: SwarmSessionInit) => SwarmSession
  /** Applies new caps from policy. */
  setCaps: (caps: { uploadBps?: number, maxPeers?: number }) => void
  /** Chunk bytes this node served to peers since start (the agent's `servedBytes`). */
  stats: () => SwarmServeStats
}
