/**
 * Defaults of the peer agent, applied once in each factory (`init.x ?? DEFAULT_X`).
 * docs/CONFIGURATION.md `## agent` names these constants rather than repeating them.
 */
import { DATA_FORMAT_FILE } from '../protocol/constants.ts'

/** Bytes read from a host file per read call while indexing (large reads keep syscalls and level batches few). */
export const INDEX_READ_BYTES = 4 * 1024 * 1024

/** Files hashed at once while indexing; reads are synchronous (cheaper than FileHandle round trips on cached trees), so 1 is enough. */
export const INDEX_CONCURRENCY = 1

/** Block entries buffered before one level batch write while indexing. */
export const INDEX_BATCH_ENTRIES = 16_384

/**
 * New block entries a refresh keeps in memory (16 bytes each, 16 MB) to merge into the
 * host index's sorted table; past it the table is rewritten from the database instead.
 */
export const INDEX_TABLE_MERGE_MAX_ENTRIES = 1_000_000

/** Candidates returned per prefix lookup: the same 4 KiB block in more files adds nothing once one copy verifies. */
export const INDEX_MAX_CANDIDATES = 4

/** Host files kept open at once while reading candidate blocks during a sync. */
export const OPEN_FILES_MAX = 64

/** Tries of a coordinator request on network errors and 5xx before giving up. */
export const RETRY_ATTEMPTS = 6

/** First retry delay; doubled each time (with jitter) up to RETRY_MAX_MS. */
export const RETRY_BASE_MS = 500

/** Longest delay between two tries of one request. */
export const RETRY_MAX_MS = 30_000

/**
 * Blocks named in one POST .../blocks request (64 MiB of data): big enough for zstd to find cross-block redundancy,
 * small enough to lose little on interruption.
 */
export const BATCH_MAX_BLOCKS = 16_384

/**
 * How much worse a per-request block batch compresses than the delta pack (which the
 * coordinator compresses once at a high level). FACTS.md: missing blocks of the update,
 * zstd -3 stream 42.7 MB vs zstd -19 27.3 MB, ratio 1.56.
 */
export const BATCH_COMPRESSION_PENALTY = 1.5

/** Seconds between checkpoints of verified chunks (temp file fsync + bitmap rename). */
export const CHECKPOINT_INTERVAL_MS = 2_000

/**
 * Most bytes of consecutive block writes the partial file gathers into one write (one write(2) per
 * 4 KiB block cost ~0.4 s of CPU per 200 MiB); the sync flushes sooner, at each verified chunk and tick.
 */
export const WRITE_GATHER_BYTES = 1024 * 1024

/**
 * Bytes per piece in which a downloaded delta pack is read and decoded: each decoded piece's blocks
 * are offered at once, a chunk all in one piece hashed once against its digest. zlib's default 16 KiB
 * pieces made one async step and one prefix check per block (docs/BENCHMARKS.md "#### Update at 100 mbit (session 9)").
 */
export const DELTA_PACK_PIECE_BYTES = 1024 * 1024

/**
 * Most bytes of the older version the self-seed reads and offers at once: blocks next to each other
 * in the old file in one read, a chunk the update kept hashed once (one read and one hash per 4 KiB
 * block before; docs/BENCHMARKS.md "#### Update at 100 mbit (session 9)").
 */
export const SELF_SEED_READ_BYTES = 1024 * 1024

/** Token bucket depth for --wan-limit, in seconds of the rate (bursts above this are smoothed). */
export const RATE_BURST_SECONDS = 0.25

/** Events sent per POST /v1/events (the schema allows 1000). */
export const EVENTS_BATCH_MAX = 500

/** Most redraws of the TTY progress bar per second. */
export const PROGRESS_REDRAWS_PER_SECOND = 5

/** Seconds between plain-text progress lines when stderr is not a TTY. */
export const PROGRESS_PLAIN_INTERVAL_MS = 5_000

/** Daemon: seconds between checks for new versions. */
export const DEFAULT_POLL_SECONDS = 300

/** Site name reported in events when neither the flag nor the config names one. */
export const DEFAULT_SITE = 'default'

/** Niceness set by --nice (os.setPriority; 19 is the lowest priority on Linux). */
export const NICE_PRIORITY = 19

/**
 * Format of the agent's data dir (DIR/data-format.json, bin/data-format.ts). Raise it, with a migration,
 * when the layout or an encoding in the dir changes so that an older trimswarm would misread it.
 */
export const AGENT_DATA_FORMAT = 1

/** Mode of the data dir and the directories under it (only the agent's user may enter). */
export const PRIVATE_DIR_MODE = 0o700

/** Mode of the files the agent writes in its data dir (only the agent's user may read them). */
export const PRIVATE_FILE_MODE = 0o600

/** Files under the agent's data dir. */
export const DATA_FILES = {
  /** The pinned coordinator public key (JSON). */
  key: 'coordinator-key.json',
  /** The host index level database. */
  hostIndex: 'host-index',
  /** Signed manifests of installed versions, per image. */
  manifests: 'manifests',
  /** In each image's manifests folder: the installed version and where it was written. */
  installed: 'installed.json',
  /** Per image (beside its manifests): the newest signed "latest" seen, below which the agent never moves unless told a version. */
  latestSeen: 'latest-seen.json',
  /** Checkpoints of interrupted syncs, per image. */
  partial: 'partial',
  /** Downloaded (possibly partial) delta packs. */
  packs: 'packs',
  /** The events queue (JSON lines). */
  events: 'events.jsonl',
  /** Stable agent id. */
  agentId: 'agent-id',
  /** The data dir lock: a level database whose LOCK file the kernel locks (fcntl) while an agent runs. */
  lockDb: 'lock.db',
  /** The PID of the agent holding the lock: information for the message of a refused second agent, never trusted. */
  lockHolder: 'lock',
  /** The swarm node's libp2p private key (its peer id, to which capabilities are bound). */
  swarmKey: 'swarm-key',
  /** The dir's format, written by the CLI (bin/data-format.ts) before an agent command opens the dir. */
  dataFormat: DATA_FORMAT_FILE
} as const

/**
 * V8 flags the agent CLI re-executes itself with (same pid, process.execve): a small young
 * generation and a capped old generation keep garbage from lazy GC out of the RSS
 * (measured on base.img: peak RSS of a first install 530 MB without, see docs/BENCHMARKS.md).
 * The old generation starts at 64 MiB: V8's default starting limit for a ~13 MB heap is ~20 MB,
 * and a sync's stream of short-lived objects reached it every ~50 ms, ~30 full GCs per cold
 * install of base.img (~0.9 of its ~2.7 s of CPU); from 64 MiB it is one, for 10-15 MiB more peak
 * RSS (257 instead of 230 MiB for an update through a delta pack): the starting size only counts
 * until the first full GC, which sizes the heap by what is live.
 * A larger young generation (8 or 16 MiB) left the full GCs as they were and added RSS.
 * The old-generation cap is what live data must fit: the host index's file table takes
 * ~200 bytes per indexed file, so 256 MiB holds about a million files; on a host with
 * more, set TRIMSWARM_NO_REEXEC=1 (no caps) or start node with a bigger cap yourself.
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=2', '--initial-old-space-size=64', '--max-old-space-size=256']

/** Chunk bytes taken from the origin per claim round of a LAN-sharing sync (one block batch). */
export const LAN_ORIGIN_BATCH_BYTES = 8 * 1024 * 1024

/** A small image is still taken from the origin in at least this many claim rounds (so late joiners share it). */
export const LAN_ORIGIN_MIN_ROUNDS = 16

/**
 * Claim rounds fetched from the origin at once: the next round's download runs while the
 * current one is decoded and written (one at a time left both ends idle two thirds of the
 * time: docs/BENCHMARKS.md "BitTorrent baseline (issue 21)"). A failure releases both.
 */
export const LAN_ORIGIN_ROUNDS_IN_FLIGHT = 2

/**
 * An update looks for the peers of its site on the version again after this long, before choosing who takes the
 * delta pack (ms): agents that start together register within it, so all see the same list and one pulls the pack.
 * The wait runs while the self-seed does, but the self-seed of base.img -> next.img takes 0.4-1.0 s with 4 agents
 * on 2 cores, so most of it delayed the pack: the WAN sat idle until 6 s (3 s wait), the update was all done in
 * 11.5 s; with 1.5 s the pack crossed from 3 s on, all done in 8.6 s (docs/BENCHMARKS.md "Update at 100 mbit
 * (session 10)"). The same order as SETTLE_MS, the claim rule's wait for agents starting together; the agents of
 * that run registered within 0.5 s of each other.
 */
export const LAN_PACK_WAIT_MS = 1_500

/** An update's other agents take origin chunks themselves once the agent fetching the delta pack made no progress for this long (ms). */
export const LAN_LEADER_STALL_MS = 15_000

/** Longest wait for a swarm change before the claim rule is asked again (ms). */
export const LAN_WAIT_MS = 500

/** `agent sync --linger`: stop serving once no peer has had a block stream open with us for this long (ms). */
export const LAN_IDLE_MS = 500

/**
 * `agent sync --linger` default: the longest an agent keeps serving after its sync while peers still fetch from it
 * (seconds); it stops after LAN_IDLE_MS without any.
 */
export const DEFAULT_LINGER_SECONDS = 120

/** While it waits for the signed manifest from a peer of its site, an agent asks its peers again after this long (ms). */
export const LAN_MANIFEST_POLL_MS = 200

/**
 * An agent that is not the one of its site to download a manifest (the lowest peer id of those
 * wanting it) takes it from the origin itself once no peer has held or been fetching it for this long (ms).
 */
export const LAN_MANIFEST_LEADER_WAIT_MS = 3_000

/** Longest wait for a peer that says it is downloading the manifest (slow WAN) before taking it from the origin too (ms). */
export const LAN_MANIFEST_FETCH_WAIT_MS = 60_000

/** Largest JSON response body the agent accepts from the coordinator (a bigger one is an error, not retried). */
export const JSON_MAX_BYTES = 64 * 1024 * 1024

/**
 * `agent sync --linger` of the agent that took its site's delta pack: it keeps serving until each peer
 * listed for the version has opened a block stream with it (they wait for its chunks and may start
 * seconds later), at most this long (ms); then the LAN_IDLE_MS rule applies.
 */
export const LAN_PACK_LINGER_MS = 20_000

/** Tries to create the partial file (O_EXCL) when someone else keeps re-creating its name: past this, a clear error. */
export const PARTIAL_CREATE_TRIES = 3

/**
 * prom-client's default metrics that `promtool check metrics` refuses (gauges
 * named `_total`); they are dropped: the same counts are in
 * nodejs_active_handles, nodejs_active_requests and nodejs_active_resources.
 */
export const LINT_FAILING_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

// --- background mode (peer-agent/background-controller.ts), LEDBAT++: draft-irtf-iccrg-ledbat-plus-plus ---

/** Queueing delay background transfers aim to add at most (ms); LEDBAT++ section 4 lowers RFC 6817's 100 ms to 60 ms. */
export const BACKGROUND_TARGET_MS = 60

/** Base delay = the minimum over this many one-minute buckets (RFC 6817 BASE_HISTORY: 10). */
export const BACKGROUND_BASE_HISTORY = 10

/** Width of one base-delay bucket (ms), RFC 6817's one minute. */
export const BACKGROUND_BASE_BUCKET_MS = 60_000

/** Current delay = the minimum of the last this-many samples, so one delayed probe does not read as a queue (RFC 6817 CURRENT_FILTER). */
export const BACKGROUND_CURRENT_FILTER = 4

/** Rate background transfers start at and never fall below (bytes/s): 16 KiB/s keeps a transfer alive and measuring. */
export const BACKGROUND_MIN_RATE = 16 * 1024

/** Rate a background transfer starts its first ramp-up at (bytes/s). */
export const BACKGROUND_START_RATE = 64 * 1024

/** Multiplicative decrease constant (LEDBAT++ section 4.3: W -= W * min(C * (qd/target - 1), 1/2), C = 1). */
export const BACKGROUND_DECREASE_CONSTANT = 1

/** Largest gain divisor of LEDBAT++'s slowed ramp-up, gain = 1 / min(16, ceil(2 * target / base)) (section 4.1). */
export const BACKGROUND_GAIN_DIVISOR_MAX = 16

/**
 * Congestion avoidance grows the rate by gain * (1 - qd/target) times this fraction of itself per
 * round trip. (LEDBAT's one packet per RTT takes minutes to refill 20 mbit at 300 ms RTT after a
 * foreground download ends; a fraction of the rate refills it in a few seconds and still stops at the target.)
 */
export const BACKGROUND_AVOIDANCE_GROWTH = 0.125

/** The periodic slowdown keeps the rate at the minimum this many round trips (LEDBAT++ section 4.4: 2). */
export const BACKGROUND_SLOWDOWN_RTTS = 2

/** A slowdown lasts until the queue has drained (a queueing delay under 6 ms), but at most this long (ms). */
export const BACKGROUND_SLOWDOWN_MAX_MS = 1_000

/** The next slowdown starts this many times the last one's duration (slowdown + ramp back) after it ended (LEDBAT++: 9, ~10 % of the time). */
export const BACKGROUND_SLOWDOWN_INTERVAL_FACTOR = 9

/** Shortest time the controller treats as a round trip (ms): on a LAN the RTT is below a timer tick. */
export const BACKGROUND_MIN_RTT_MS = 20

/** A delay probe that takes longer than this counts as a loss: the rate is halved (ms). */
export const BACKGROUND_PROBE_TIMEOUT_MS = 2_000

/**
 * Shortest gap between the starts of two delay probes (ms); probes run one at a time. The current delay is the
 * minimum of the last BACKGROUND_CURRENT_FILTER samples, so it sees a queue that many intervals late: at 100 ms
 * the rate sawed between 0.8 and 1.4x the link's with 100 ms of queue at each top (a model of the bench); at
 * 50 ms it settles.
 */
export const BACKGROUND_PROBE_INTERVAL_MS = 50

/** Sender-paced, a higher rate is sent to the coordinator at most this often (ms); a lower one at once. */
export const BACKGROUND_PACE_UPDATE_MS = 100

/** Probing stops once a paced transfer has taken no bytes for this long (ms), so an idle agent sends no probes. */
export const BACKGROUND_PROBE_IDLE_MS = 1_000

/** Time between the background mode's status lines (rate, delays) in the agent's log, while bytes move (ms). */
export const BACKGROUND_STATUS_INTERVAL_MS = 2_000

/** Longest single sleep of a paced read before the background rate is looked at again (ms): a rate that rose meanwhile shortens the wait. */
export const BACKGROUND_RECHECK_MS = 50

/** With sender-side pacing, the delivered rate (and the rate allowed, to compare) is measured over this long (ms): several 16 KiB slices at the start rate. */
export const BACKGROUND_DELIVERY_WINDOW_MS = 500

/**
 * With sender-side pacing, the rate is raised only while what arrives is at least this share of what the rate
 * allowed over the same window a probe round trip earlier (the meter's lag): a sender paced above what the path carries fills its socket buffer, whose backlog
 * then drains into the bottleneck's queue whatever the rate says (measured at 20 mbit, 20 ms: a slow start that
 * reached 34 MB/s held 170-270 ms of queue for seconds; capping the rate at 1.5x the delivered one still left
 * 80-100 ms for a second after each cut, and 0.21 of the idle link used).
 */
export const BACKGROUND_PATH_LIMITED_SHARE = 0.9

/**
 * With sender-side pacing, the rate grows to at most this many times the delivered rate: slow start multiplies it
 * by up to 1.85 per probe, faster than the 500 ms delivery window shows a path that stopped keeping up (measured at
 * 40 ms RTT: 4.24 MB/s asked of a 2.5 MB/s link for 2 s, whose backlog then held the queue for seconds).
 */
export const BACKGROUND_DELIVERY_HEADROOM = 1.5

/**
 * With sender-side pacing, the queueing delay the rate settles at, as a share of BACKGROUND_TARGET_MS (24 ms of
 * 60; BACKGROUND_HOLD_GAIN), and what ends slow start. Under the 50 ms of added delay with room for a probe
 * filter that sees a queue a few samples late.
 */
export const BACKGROUND_SETPOINT_SHARE = 0.4

/**
 * With sender-side pacing near the path's rate, the rate is what arrives times 1 + this x (setpoint - queueing
 * delay) / setpoint: 1.1 on an empty queue, 0.85 at the target. Small: the delay it reacts to is a few samples old.
 */
export const BACKGROUND_HOLD_GAIN = 0.1

/**
 * With sender-side pacing, the rate is held at what arrives only while at least this share of what it allowed
 * arrives: less is a transfer that does not use its rate (between requests), not a path that cannot carry it.
 */
export const BACKGROUND_HOLD_MIN_SHARE = 0.5

/**
 * With sender-side pacing, a queueing delay above this share of the setpoint (6 ms) is a queue of our own: the rate
 * is then held at what arrives (BACKGROUND_HOLD_GAIN). Below it, a transfer that did not use its rate is only not
 * raised: held at what it used, one that paused between requests fell to the floor.
 */
export const BACKGROUND_QUEUE_SEEN_SHARE = 0.25

/**
 * With sender-side pacing, the rate the path carried while the rate was held at a queue of its own is remembered
 * this long (ms): in avoidance the rate grows to at most BACKGROUND_HOLD_GAIN above it. Past it (a foreground
 * flow took the link for longer), the climb is not capped, so a stale low value cannot keep the rate down.
 */
export const BACKGROUND_PATH_PEAK_MS = 10_000

/**
 * For this many round trips after a cut, the rate is cut again only if the queueing delay has not fallen
 * since: a queue drains at the link rate minus ours, slower than one round trip, and cutting again each
 * round trip while it drains took the rate to the floor (bench/background.ts: 0.45 of an idle link).
 */
export const BACKGROUND_DRAIN_RTTS = 4

/**
 * Largest multiplicative cut of one decrease. LEDBAT++ (section 4.3) allows 1/2; with receiver-side pacing
 * the sender bursts into the queue whenever our rate passes the link's, so cuts come often, and halving
 * each time left an idle 20 mbit link 0.31 used at 20 ms RTT, a quarter 0.57 (bench/background.ts),
 * while a foreground download beside it still got 0.89-0.91 of its speed alone.
 */
export const BACKGROUND_MAX_CUT = 0.25

/**
 * Largest cut with sender-side pacing, where cuts come only when our own queue builds: LEDBAT++'s 1/2. A quarter
 * yielded too slowly: a download beside the sync got 0.75 of its speed alone at 20 ms RTT (bench/background.ts).
 */
export const BACKGROUND_MAX_CUT_SENDER_PACED = 0.5

/**
 * The segment cost rule (segment-plan.ts): a compressed segment is taken whole
 * when its bytes are at most the blocks still missing from it x its bytes per
 * block x this factor, i.e. when at least 1 / factor of its blocks are missing
 * (80 % at 1.25). Below that the missing blocks go into a block batch, which
 * the coordinator compresses per request (level 9, 128 MiB window: ~4 % larger
 * per block than a level-19 4 MiB segment on base.img) and which costs it CPU.
 * With claim rounds on segment boundaries (lan-round-plan.ts), 1.25 against
 * 1.1 took a trim client's coordinator CPU from 2.2 s to 1.7-1.8 s for 0.04 MB
 * more on the WAN (docs/BENCHMARKS.md "With LAN sharing: claim rounds on
 * segment boundaries"); the WAN budget (within 5 % of the batch bytes) bounds it.
 */
export const SEGMENT_BATCH_PENALTY = 1.25

/** Segment downloads in flight at once (each streamed and decoded as it arrives): hides the round trip between them. */
export const SEGMENT_PARALLEL_FETCHES = 3
