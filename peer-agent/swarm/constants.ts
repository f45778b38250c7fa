/**
 * Defaults of the LAN swarm, applied once in each factory (`init.x ?? DEFAULT_X`).
 * docs/CONFIGURATION.md and docs/ARCHITECTURE.md "Swarm" name these constants.
 */

/** Listen address when none is configured: all interfaces, a random port. */
export const DEFAULT_LISTEN = '/ip4/0.0.0.0/tcp/0'

/** Peers served at once (policy `maxPeers` overrides; 0 in policy means this default). */
export const DEFAULT_MAX_PEERS = 16

/** Peers a session fetches from at once. */
export const DEFAULT_SESSION_PEERS = 16

/**
 * Bytes requested from one peer and not yet received (pipelining) before its
 * delivery rate is measured, and the least its pipeline shrinks to: 1 MiB is
 * ~1 s of a slow (1 MB/s) peer, so a slow seed is never asked for a whole
 * small image at once and what it has not sent yet stays free for faster
 * peers (8 MiB let one downloader queue a 2.5 MB image on a 1 MB/s seed and
 * never trade with its neighbour). A fast peer outgrows it within
 * RATE_WINDOW_MS (peer-ledger.ts).
 */
export const PIPELINE_BYTES = 1024 * 1024

/**
 * Most bytes requested from one fast peer and not yet received: a peer's
 * pipeline grows from PIPELINE_BYTES to what it delivered in the last
 * PIPELINE_SECONDS, up to this. On a loaded machine a receiver descheduled for
 * tens of ms otherwise lets the sender run dry (16 and 32 MiB measured ~1.3-1.8x
 * the MB/s of 8 MiB between two processes, docs/BENCHMARKS.md "swarm").
 */
export const PIPELINE_MAX_BYTES = 32 * 1024 * 1024

/**
 * Seconds of a peer's measured delivery rate its pipeline holds (between
 * PIPELINE_BYTES and PIPELINE_MAX_BYTES): a request waits about this long
 * behind the others, far below REQUEST_TIMEOUT_MS unless the peer slows down 20x.
 */
export const PIPELINE_SECONDS = 1

/** Most requests in flight per peer, whatever the chunk sizes: stays below the server's MAX_QUEUED_WANTS. */
export const PIPELINE_MAX_REQUESTS = 512

/** Requests in flight per peer at the least, whatever the chunk size. */
export const PIPELINE_MIN_REQUESTS = 2

/** A peer with requests in flight that sends no byte for this long is dropped (its requests go elsewhere). */
export const STALL_TIMEOUT_MS = 5_000

/** A peer dropped again for stalling or slowness waits twice the back-off of the time before, up to 2^this x PEER_RETRY_BACKOFF_MS. */
export const MAX_SLOW_BACKOFF_DOUBLINGS = 5

/** A single chunk request not answered within this is a slow peer: dropped, the chunk goes elsewhere. */
export const REQUEST_TIMEOUT_MS = 20_000

/** The HELLO must arrive within this after a stream opens, else the stream is closed. */
export const HELLO_TIMEOUT_MS = 5_000

/** After its claimed owner stops making progress for this long, a chunk no peer has is fetched from the origin. */
export const ORIGIN_FALLBACK_MS = 10_000

/** Endgame: once every missing chunk is requested, each may be requested from up to this many peers at once. */
export const ENDGAME_DUPLICATES = 2

/** WANT indices a serving peer queues per stream; more is a protocol violation. */
export const MAX_QUEUED_WANTS = 1024

/** How often a session retries dialling known peers it has no stream with. */
export const REDIAL_INTERVAL_MS = 2_000

/** A peer that refused us or failed to dial is not tried again for this long. */
export const PEER_RETRY_BACKOFF_MS = 10_000

/** Indices of newly verified chunks gathered before one HAVE_UPDATE is sent. */
export const HAVE_UPDATE_FLUSH_MS = 20

/** libp2p stream inactivity timeout: an idle session stream is kept this long. */
export const STREAM_IDLE_TIMEOUT_MS = 10 * 60_000

/** Prefix of the DHT key of an image version (hashed with SHA-256 into a CID). */
export const DHT_KEY_PREFIX = 'trimswarm/image-version/'

/**
 * After a session starts, originChunks() hands out nothing for this long, so
 * agents that start together first see each other (and split the claims)
 * instead of each claiming everything while alone.
 */
export const SETTLE_MS = 1_500

/**
 * The settle wait goes on past SETTLE_MS, up to this long from the session's start, while a peer that
 * answered it does not serve the version yet (NOT_SERVING: its sync is starting) has not come. On a
 * busy machine such a peer's session can start more than SETTLE_MS after ours; claiming without it
 * split the origin's chunks between fewer agents than the others' rule did, so they fetched part of
 * them twice (branch trim at 100 mbit, session 13: 26.7 MB on the WAN instead of about 21). Bounded, so
 * a peer that says so and never comes (a hostile one with a valid token) delays the claims by at most this.
 */
export const SETTLE_STARTING_MS = 4_000

/** A dial plus HELLO/HAVE exchange taking longer than this fails. */
export const CONNECT_TIMEOUT_MS = 5_000

/**
 * A serving peer answers queued WANTs in writes of up to this many chunk bytes:
 * noise encrypts each write in 65519-byte messages, so one write per chunk
 * costs one extra small message (and socket write) per chunk; batching
 * measured 1.5x fewer socket writes (docs/BENCHMARKS.md "swarm").
 */
export const WRITE_BATCH_BYTES = 512 * 1024

/** A manifest request (dial done) must be answered within this, whole envelope included. */
export const MANIFEST_ANSWER_TIMEOUT_MS = 30_000

/** Signed manifests a node keeps to answer peers with (the versions it synced last). */
export const MANIFEST_HELD_VERSIONS = 4

/** A rendezvous refresh that failed (coordinator away past the client's retries) is tried again after this long, well inside the registration TTL (ms). */
export const RENDEZVOUS_RETRY_MS = 5_000

/** Longest an agent that stops waits for the coordinator to remove its rendezvous registration (ms); past it the registration lapses by its TTL. */
export const RENDEZVOUS_LEAVE_MS = 2_000

/**
 * zstd level of chunks a server compresses for BLOCKS_PROTOCOL_ZSTD. Chosen by measurement on
 * base.img's chunks (docs/BENCHMARKS.md "BitTorrent baseline (issue 21)"): level 1 made them
 * 2.36x smaller at 4.8 CPU-s per GB, level 3 2.45x at 5.4 CPU-s per GB; the few % fewer LAN bytes
 * of level 3 save less noise and socket CPU than its compression costs.
 */
export const LAN_ZSTD_LEVEL = 1

/**
 * A chunk goes compressed only when its zstd frame is at most this share of its length: an
 * incompressible chunk (already compressed data) goes as it is, costing the receiver no decode.
 */
export const LAN_ZSTD_MAX_RATIO = 0.875

/**
 * Compressed chunks a server keeps (bytes, all versions) to send again without compressing again,
 * including those it received compressed and verified: in a site each chunk is sent to every
 * other agent, so it is compressed about once in the site. 32 MiB hold about 80 MiB of chunks.
 */
export const LAN_ZSTD_CACHE_BYTES = 32 * 1024 * 1024
