/**
 * Defaults of the coordinator, applied once where each setting is read
 * (`config.x ?? DEFAULT_X`). docs/CONFIGURATION.md names these constants.
 * Other parts of the coordinator append their own below.
 */

/** Where the coordinator listens when neither --listen nor the config says (loopback: exposing it is a choice). */
export const DEFAULT_LISTEN = '127.0.0.1:8440'

/** Lifetime of a user session token from POST /v1/auth/login: a work day, so a console or CLI session survives lunch. */
export const DEFAULT_SESSION_TTL_SECONDS = 8 * 3600

/**
 * Logged-out sessions remembered one by one until they expire (about 100 bytes each in memory and in the db);
 * past it every session issued so far is revoked at once. 10,000 logouts within one session lifetime is far
 * more than any console sees, so the mass revocation only happens under a flood of logins and logouts.
 */
export const DEFAULT_MAX_REVOKED_SESSIONS = 10_000

/** Events older than this many days are deleted (aggregated reports are kept). */
export const DEFAULT_EVENT_RETENTION_DAYS = 90

/** How often expired events are swept. */
export const DEFAULT_EVENT_SWEEP_INTERVAL_MS = 3600_000

/** Largest JSON body of any API route (an EventBatch of 1,000 events is ~0.5 MB). */
export const DEFAULT_MAX_JSON_BODY_BYTES = 2 * 1024 * 1024

/**
 * Most bytes of request bodies the coordinator holds in memory at once, all
 * requests together (503 past it). A publish uploads a few chunks at a time
 * (a chunk is at most a few MiB) and JSON bodies are at most
 * DEFAULT_MAX_JSON_BODY_BYTES, so normal use stays far below it.
 */
export const DEFAULT_MAX_BUFFERED_BODY_BYTES = 256 * 1024 * 1024

/** Largest body of any request at all (a whole manifest at commit, see MAX_MANIFEST_BYTES, plus slack). */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024 + 1024 * 1024

/**
 * A body the coordinator refuses before reading it all (too large, no token) is read on and dropped, up to this many
 * bytes and REFUSED_BODY_MAX_MS, before the answer: a client still sending then reads the 4xx instead of a reset
 * connection (RFC 9112 §9.6 "lingering close"). Past either bound the answer says `Connection: close`.
 */
export const REFUSED_BODY_MAX_BYTES = 64 * 1024 * 1024

/**
 * The same bound for a request refused for who sent it (401 no valid token, 403 no access): such a client has
 * earned no lingering. 1 MiB covers every small body (JSON, a form), so a mistyped token still keeps its
 * connection; a large body is answered at once. Dropping is streaming, but the pieces read are freed only by
 * the next garbage collection: 4 clients each sending 48 MiB at once, dropped in full, raised the coordinator's
 * peak RSS by ~85 MiB (Node 24; the same with a bare node:http server), with this bound by ~5 MiB.
 */
export const REFUSED_UNAUTHORIZED_BODY_MAX_BYTES = 1024 * 1024

/**
 * How long a connection whose request body was left unread stays open (not read from) after its answer went
 * out, so the client reads the answer before the close resets the connection (request-body.ts closeAfterAnswer).
 */
export const REFUSED_BODY_LINGER_MS = 2000

/** See REFUSED_BODY_MAX_BYTES. */
export const REFUSED_BODY_MAX_MS = 10_000

/** Login rate limit: sliding window length. */
export const DEFAULT_LOGIN_WINDOW_SECONDS = 60

/** Login attempts allowed per client IP within the window (brute force across users). */
export const DEFAULT_LOGIN_MAX_PER_IP = 30

/** Failed logins allowed per user name within the window (brute force on one user). */
export const DEFAULT_LOGIN_MAX_FAILURES_PER_USER = 10

/** Default page size of GET /v1/events, and its maximum. */
export const DEFAULT_EVENTS_PAGE = 100
export const MAX_EVENTS_PAGE = 1000

/** How long stop() waits for in-flight requests before closing connections. */
export const SHUTDOWN_GRACE_MS = 5000

/**
 * How long an idle keep-alive connection stays open. Node's 5 s default races
 * with clients that pause a few seconds between requests (the client sends on
 * a socket the server is closing: ECONNRESET); 65 s also outlasts the usual
 * 60 s idle timeout of load balancers, which must close first.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000

/**
 * Connections the kernel may hold waiting for accept() (Linux caps it at
 * net.core.somaxconn). Node's default, 511, overflows when a crowd of agents
 * connects at once while the event loop is busy: the kernel then drops the
 * handshake's last ACK and the client's request with it, and the client only
 * gets an answer after TCP retransmits (seconds; up to a timeout under load).
 */
export const LISTEN_BACKLOG = 4096

/**
 * glibc mmap threshold of the `trimswarm coordinator` process (set by re-executing it, bin/reexec.ts):
 * buffers of at least this size (zstd contexts of block batches) go back to the
 * kernel when freed. Measured (docs/BENCHMARKS.md `## load`): 20 syncing agents and
 * 1,000 manifest connections left RSS +126 MiB after a full GC with glibc's adaptive
 * threshold, +29 MiB with this, at the same CPU per request.
 */
export const COORDINATOR_MMAP_THRESHOLD_BYTES = 1024 * 1024

/** Upper bounds (seconds) of the request latency histogram in /metrics. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** Files the coordinator keeps directly under its data dir. */
export const ADMIN_TOKEN_FILE = 'admin.token'
export const SIGNING_KEY_FILE = 'signing-key.pem'
export const SESSION_SECRET_FILE = 'session.key'
export const META_DB_DIR = 'meta'
export const BLOCKS_DIR = 'blocks'
/**
 * Written in the data dir by a coordinator whose chunks live in S3 (bucket,
 * endpoint, key prefix), so `coordinator fsck` of that dir without the config
 * refuses instead of finding every chunk missing in DATA/blocks.
 */
export const S3_BLOCK_STORE_MARKER_FILE = 'block-store-s3.json'

/**
 * Format of the coordinator's data dir (DIR/data-format.json, bin/data-format.ts). Raise it, with a migration,
 * when the layout or an encoding in the dir changes so that an older trimswarm would misread it.
 */
export const COORDINATOR_DATA_FORMAT = 1

/** A new group policy's fields when `trimswarm policy set` does not give them. */
export const DEFAULT_POLICY = {
  images: [] as string[],
  wanLimitBps: 0,
  lanSharing: true,
  lanUploadBps: 0,
  maxPeers: 8,
  updateWindow: null,
  indexFolders: {}
}

// --- images, origin and delta packs (coordinator/image-service.ts and friends) ---

/** Prefix of every level sublevel the image service owns. */
export const IMAGE_SUBLEVEL_PREFIX = 'img'

/** Directory under the data dir where delta pack files were kept before packs moved to the block store (imported at start). */
export const PACKS_DIR = 'packs'

/**
 * Bytes per stored piece of a delta pack (the block store holds a pack as pieces, each
 * one object). A download holds one piece in memory at a time: 1 MiB keeps a thousand
 * clients at different offsets of different packs to ~1 GiB, while a 2 GiB pack's
 * record lists 2,048 pieces (~170 KB of JSON).
 */
export const DELTA_PACK_PIECE_BYTES = 1024 * 1024

/** Delta pack pieces kept in memory once read (bytes), so clients downloading the same pack together read each piece from the block store once. */
export const DELTA_PACK_CACHE_BYTES = 64 * 1024 * 1024

/** Largest JSON body of POST /v1/chunks/missing (100,000 CIDs of ~60 characters). */
export const MAX_MISSING_REQUEST_BYTES = 8 * 1024 * 1024

/** Largest JSON body of POST .../blocks: a range list of ~500k ranges; more is a client that should split its batch. */
export const MAX_BLOCK_BATCH_REQUEST_BYTES = 8 * 1024 * 1024

/** Decoded manifests kept in memory for the origin routes (versions are immutable, so caching is safe). */
export const MANIFEST_CACHE_SIZE = 16

/** Images whose version records the image service keeps in memory (resolving `latest` reads no database). */
export const VERSION_RECORD_CACHE_IMAGES = 1024

/** Signed envelopes kept in memory for the manifest route: at most this many, and at most ENVELOPE_CACHE_BYTES in all. */
export const ENVELOPE_CACHE_ENTRIES = 256
export const ENVELOPE_CACHE_BYTES = 64 * 1024 * 1024

/** Chunks checked in parallel at commit and in POST /v1/chunks/missing. */
export const CHUNK_CHECK_CONCURRENCY = 16

// --- block store (coordinator/directory-block-store.ts) ---

/**
 * Hex characters of a chunk's digest per shard directory level, and levels:
 * `blocks/ab/cd/abcd...` gives 65,536 leaf directories, so even 30 million
 * chunks (a 2 TiB image at 64 KiB) keep a few hundred files per directory.
 */
export const BLOCK_STORE_SHARD_CHARS = 2
export const BLOCK_STORE_SHARD_LEVELS = 2

/** Suffix of a chunk being written; such files are never listed or read, and are deleted when a store opens. */
export const BLOCK_STORE_TMP_SUFFIX = '.tmp'

/**
 * Whether `get` re-hashes a chunk unless the call says `verify: false`. On:
 * a bit flipped on the coordinator's disk must never be served, and re-hashing
 * a 64 KiB chunk (~40 us) costs less than reading it from a file (~200-300 us
 * per chunk measured here, page cache, loaded machine).
 */
export const DEFAULT_BLOCK_STORE_VERIFY_ON_READ = true

/** Shard directories scanned in parallel when a store opens (stale temp file sweep). */
export const BLOCK_STORE_SCAN_CONCURRENCY = 16

// --- S3 block store (coordinator/s3-block-store.ts; the config file's `blockStore.s3`) ---

/** Key prefix of chunks in the bucket: `chunks/<hex digest>`. */
export const DEFAULT_S3_KEY_PREFIX = 'chunks/'

/** Signing region when the config names none; RGW and MinIO accept any region. */
export const DEFAULT_S3_REGION = 'us-east-1'

/** Tries of each S3 request (the SDK retries 5xx, throttling and network errors with backoff). */
export const DEFAULT_S3_MAX_ATTEMPTS = 3

/** TCP connect timeout to the S3 endpoint: a dead endpoint fails a request in seconds, not minutes. */
export const DEFAULT_S3_CONNECT_TIMEOUT_MS = 5_000

/** Socket idle timeout of one S3 request (a chunk is at most 4 MiB: even at 1 MB/s it moves well within this). */
export const DEFAULT_S3_REQUEST_TIMEOUT_MS = 30_000

/** Keys per ListObjectsV2 page (S3's maximum is 1000). */
export const S3_LIST_PAGE_KEYS = 1000

// --- LDAP / Active Directory (coordinator/ldap-authenticator.ts; the config file's `ldap` object) ---

/** Finds the user's entry; `{user}` is the login name, escaped per RFC 4515. AD: `(sAMAccountName={user})`. */
export const DEFAULT_LDAP_USER_FILTER = '(uid={user})'

/** Attribute of the user's entry that holds the canonical user name (AD: sAMAccountName). */
export const DEFAULT_LDAP_USER_NAME_ATTRIBUTE = 'uid'

/** Where group names come from: the user's memberOf values, or a search for group entries. */
export const DEFAULT_LDAP_GROUP_SOURCE = 'memberOf'

/** Attribute of the user's entry listing the DNs of its groups (AD and OpenLDAP's memberof overlay). */
export const DEFAULT_LDAP_MEMBER_OF_ATTRIBUTE = 'memberOf'

/** Group search: `{dn}` is the user's DN and `{user}` the canonical user name, both escaped per RFC 4515. */
export const DEFAULT_LDAP_GROUP_FILTER = '(member={dn})'

/** Group search: attribute of a group entry that is its name (a policy key). */
export const DEFAULT_LDAP_GROUP_NAME_ATTRIBUTE = 'cn'

/** Longest wait for one LDAP operation (bind, search): a directory slower than this counts as down (503). */
export const DEFAULT_LDAP_TIMEOUT_MS = 5000

/** Longest wait for the TCP (and LDAPS) connection to the directory. */
export const DEFAULT_LDAP_CONNECT_TIMEOUT_MS = 3000

/** Longest login name sent to the directory (the login API allows the same; see protocol/api.ts LoginRequest). */
export const MAX_LDAP_USER_LENGTH = 256

/** Longest password sent to the directory (as protocol/api.ts LoginRequest). */
export const MAX_LDAP_PASSWORD_LENGTH = 1024

/**
 * zstd level of POST .../blocks streams (compressed per request). Level 9 with
 * the 2^27 window is what keeps a first install of base.img under 20 MB: its
 * 76 MiB of missing blocks compress to 19.20 MB, plus the 0.49 MB manifest
 * (level 6: 19.43 MB, leaving under 0.1 MB of margin), at ~20 MB/s of one
 * core. Measured:
 * docs/ARCHITECTURE.md "Origin compression".
 */
export const ORIGIN_ZSTD_LEVEL = 9

/** log2 of the match window of block streams; long-distance matching is on with it (0 = zstd's default window). */
export const ORIGIN_ZSTD_WINDOW_LOG = 27

/** zstd level of delta packs (compressed once per version, served to every updating client). */
export const DELTA_PACK_ZSTD_LEVEL = 19

/** log2 of the match window of delta packs (2^27 = 128 MiB; zstd decoders accept up to 2^27 without options). */
export const DELTA_PACK_ZSTD_WINDOW_LOG = 27

/**
 * Block batch streams compressing at once; more requests wait their turn. Each
 * holds a zstd window of up to 2^ORIGIN_ZSTD_WINDOW_LOG bytes (less for a
 * smaller batch), so this bounds the origin's memory to roughly this many
 * windows whatever the number of clients.
 */
export const ORIGIN_MAX_CONCURRENT_BATCHES = 8

/**
 * A block batch stream whose client has taken no byte for this long is aborted and its slot freed: a client that
 * asks and never reads must not hold a slot for ever. An agent reads its stream without pause (it decompresses,
 * hashes and writes each block as it comes), so 30 s of silence is a client gone or hostile, not a slow disk.
 */
export const ORIGIN_BATCH_STALL_MS = 30_000

// --- sender-side pacing of origin streams (coordinator/pace.ts, protocol/pace.ts) ---

/** Largest piece a paced stream hands the HTTP writer at once (bytes): one wait at the 16 KiB/s floor is 1 s. */
export const PACE_SLICE_BYTES = 16 * 1024

/** Depth of a pace session's token bucket in seconds of its rate (at least one slice): shallow, so bytes leave evenly, not in bursts. */
export const PACE_BURST_SECONDS = 0.02

/** A pace session not named by a request for this long is forgotten (ms); its streams keep their last rate. */
export const PACE_IDLE_MS = 60_000

/** Pace sessions one principal holds at once (the least recently used is dropped): an agent uses one per sync. */
export const PACE_MAX_SESSIONS_PER_OWNER = 8

/** Principals with pace sessions at once (the least recently used is dropped): bounds the registry's memory. */
export const PACE_MAX_OWNERS = 10_000

/**
 * Directory groups whose members are admins (console and admin API) when the
 * config names none: none. Admin groups are named by full DN in the config
 * (`adminGroups`); a default group name would match any group of that name
 * anywhere in the directory.
 */
export const DEFAULT_ADMIN_GROUPS: readonly string[] = []

/** Whether `adminGroups` may name groups by short name (cn) as well as by DN: off unless the config opts in (`adminGroupsByName`). */
export const DEFAULT_ADMIN_GROUPS_BY_NAME = false

// --- storage gc (coordinator/storage-gc.ts) ---

/**
 * Automatic storage gc runs this often (seconds; 0 = off, run `trimswarm image gc` by hand). Daily: retiring is
 * rare, and a day's delay before the disk shrinks costs nothing next to deleting during a busy hour.
 */
export const DEFAULT_GC_INTERVAL_SECONDS = 86_400

/**
 * Unused chunks stored (uploaded, or found present by a publish's missing-chunks check) less than this many seconds
 * ago are kept: the chunks of a publish in progress are in no version until its commit. A day covers the upload of
 * the largest image over a slow link; a coordinator restart mid-publish does not shorten it (the time is the chunk's).
 */
export const DEFAULT_GC_GRACE_SECONDS = 86_400

// --- metrics ---

/**
 * At most this many (site, image) pairs in trimswarm_sync_bytes_total (3 series
 * each, one per source), so the labels agents send cannot grow the coordinator's
 * memory or a Prometheus server without bound; reports past it are counted in
 * trimswarm_sync_bytes_dropped_total.
 */
export const MAX_SYNC_BYTES_SERIES = 10_000

/** A metrics token (config metrics.tokenFile) shorter than this is refused at start: it would be guessable. */
export const MIN_METRICS_TOKEN_CHARS = 32

/**
 * prom-client's default metrics that `promtool check metrics` refuses (gauges
 * named `_total`); they are dropped: the same counts are in
 * nodejs_active_handles, nodejs_active_requests and nodejs_active_resources.
 */
export const LINT_FAILING_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

// ---- hostile machine tokens: events, reports, rendezvous (docs/SECURITY.md) ----

/**
 * Distinct sites one token (or user) may name itself when the coordinator has no site for it (no
 * `token create --site`, no `sites` subnet matching its address): enough for a laptop that moves between
 * a few branches, few enough that one token cannot fill the reports with invented sites.
 */
export const DEFAULT_MAX_SITE_HINTS_PER_TOKEN = 16

/** An event time later than the coordinator's clock plus this is replaced by the time it arrived (5 min: NTP-less laptops drift seconds, not minutes). */
export const DEFAULT_EVENT_CLOCK_SKEW_SECONDS = 300

/**
 * Events one token (or user) may post per minute before POST /v1/events answers 429. An agent sends a few
 * per sync plus one progress event every few seconds; 20,000 leaves room for a few hundred agents sharing
 * one site token, while 160 batches of 1,000 junk events are cut off after 20.
 */
export const DEFAULT_MAX_EVENTS_PER_MINUTE = 20_000

/** Distinct agents (agent names) one token or user may report as; each keeps one record. Shared site tokens: a big branch. */
export const DEFAULT_MAX_AGENTS_PER_TOKEN = 5_000

/** Live rendezvous registrations one token (or user) may hold at once (one per agent machine and site). */
export const DEFAULT_MAX_PEER_REGISTRATIONS_PER_TOKEN = 1_000

/** Event rate limiters remembered at most (least recently used dropped first): memory stays bounded however many principals post. */
export const EVENT_RATE_KEYS = 100_000

/**
 * zstd level of the compressed segments built at publish (issue 19): every cold
 * client downloads the same files, so they are compressed once, slowly and well.
 * Measured on base.img's 186 MiB of distinct blocks in 4 MiB frames (docs/BENCHMARKS.md
 * `## origin segments`): level 9 55.5 MB, 15 54.8 MB, 19 50.4 MB (~1.4 CPU-s per MiB).
 */
export const SEGMENT_ZSTD_LEVEL = 19

/** Segment files kept in memory once read (bytes), so a crowd of cold clients reads each from the block store once. */
export const SEGMENT_CACHE_BYTES = 64 * 1024 * 1024

/** Level sublevel of the segment tables. */
export const SEGMENT_SUBLEVEL = 'img-segments'
