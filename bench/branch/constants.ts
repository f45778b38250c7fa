/** Defaults of the branch-office benchmark (`npm run bench -- branch`), in one place. */

/** Scenarios in run order: update starts from the v1 that cold left on each agent. */
export const SCENARIOS = ['cold', 'update', 'trim'] as const

/** One scenario name. */
export type Scenario = typeof SCENARIOS[number]

/** Agents in the branch by default (the acceptance run uses 4). */
export const DEFAULT_AGENTS = 4

/** Upper bound on --agents: every agent is a process and 2 cores are the reference machine. */
export const MAX_AGENTS = 32

/** WAN link rate by default: a branch office's fibre line; 4 agents x 3 methods x 3 scenarios finish in minutes. */
export const DEFAULT_WAN_RATE = '100mbit'

/** Round trip added on the WAN path by default, ms (a regional WAN). */
export const DEFAULT_WAN_RTT_MS = 20

/** LAN rate by default: "0" = not shaped (the branch's loopback/LAN is far faster than the WAN). */
export const DEFAULT_LAN_RATE = '0'

/** Where the report goes by default (relative to the current folder). */
export const DEFAULT_OUT_DIR = 'bench-out/branch'

/** Sampling period of the interface counters, ms. */
export const SAMPLE_PERIOD_MS = 250

/** Private addresses on the WAN veth (a /30 inside our own namespaces only). */
export const HQ_ADDRESS = '10.77.0.1'
/** The branch end of the WAN veth. */
export const BRANCH_ADDRESS = '10.77.0.2'
/** Prefix length of the veth subnet. */
export const WAN_PREFIX = 30

/** Ports in the hq namespace (the namespace is ours alone, so fixed ports cannot collide). */
export const COORDINATOR_PORT = 8440
/** The plain HTTP file server (compressed images, casync store). */
export const HTTP_PORT = 8080
/** Where services listen behind the delaying relay (hq loopback). */
export const BACKEND_PORT_OFFSET = 10_000

/** zstd level of the plain-download baseline (what a web server would precompress with quickly). */
export const HTTP_ZSTD_LEVEL = 3

/** Image name and versions published to the coordinator. */
export const IMAGE_NAME = 'branch-bench'
/** Version of base.img. */
export const V1 = 'v1'
/** Version of next.img. */
export const V2 = 'v2'
/** Group of the machine token the agents use. */
export const AGENT_GROUP = 'branch-bench'

/** How long a process gets after SIGTERM before SIGKILL, ms. */
export const KILL_GRACE_MS = 3000

/** Acceptance: trimswarm's own origin bytes must be within this fraction of the WAN interface counters. */
export const ACCOUNTING_TOLERANCE = 0.05

/** How long the update scenario waits for the coordinator's background delta pack build, ms. */
export const DELTA_PACK_WAIT_MS = 15 * 60_000

/** Most to wait for the coordinator's background build of a version's segments (zstd level 19) before trimswarm runs. */
export const SEGMENT_WAIT_MS = 30 * 60_000

/** BitTorrent baseline: zstd level of the image it shares (compressed once, as a torrent publisher would, with --long). */
export const BT_ZSTD_LEVEL = 19
/** zstd --long window (2^27 = 128 MiB: the decoder's default limit, so clients need no extra memory flag). */
export const BT_ZSTD_WINDOW_LOG = 27
/** Piece size of the torrent (1 MiB, what torrent makers pick for files of tens of MB). */
export const BT_PIECE_BYTES = 1024 * 1024
/** opentracker's port in hq (HTTP announce/scrape). */
export const TRACKER_PORT = 6969
/** The hq seed's listen port. */
export const SEED_PORT = 6881
/** Client i (from 0) listens on CLIENT_PORT_BASE + i: the clients share the branch namespace. */
export const CLIENT_PORT_BASE = 6891
/** How long a BitTorrent client that is done keeps seeding for the others at most, s (like trimswarm's --linger). */
export const BT_LINGER_MAX_S = 120
/** How long the hq seed may take to appear at the tracker, ms. */
export const BT_SEED_READY_MS = 60_000
