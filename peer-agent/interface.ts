/** Types shared by the agent's components. */
import type { FileHandle } from 'node:fs/promises'
import type { Manifest } from '../protocol/manifest.ts'
import type { Logger } from '../utils/interface.ts'
import { silentLogger as silent } from '../utils/logger.ts'
import { createAgentLogger } from './logger.ts'

/** Options every async call takes (one for every side, in utils/). */
export type { AbortOptions } from '../utils/interface.ts'

/**
 * Where the agent's components report warnings and progress: the structured Logger of utils/
 * (a message for people, fields for programs), of which the agent needs `info` and `warn`.
 * `debug` is for routine events a sync recovers from by itself (a peer that left refused a dial,
 * a stream reset, a foreign peer's capability refused, events kept for later): shown with
 * --verbose, otherwise only counted; a component calls it as `logger.debug?.(...)`.
 */
export type AgentLogger = Pick<Logger, 'info' | 'warn'> & Partial<Pick<Logger, 'debug' | 'error'>>

/** A logger that also says how many debug lines it kept back (the CLI's summary line counts them). */
export interface CountingLogger extends Pick<Logger, 'info' | 'warn' | 'debug'> {
  /** Debug lines not shown (without `verbose`). */
  hiddenDebug: () => number
}

/** A logger writing text lines (`warning: ...` for warnings) to stderr (the CLI's default; logger.ts has the JSON format); debug lines only when `verbose`. */
export function stderrLogger (quiet = false, options: { verbose?: boolean } = {}): CountingLogger {
  return createAgentLogger({ quiet, verbose: options.verbose })
}

/** A logger that drops everything (tests, --json without --verbose). */
export const silentLogger: AgentLogger = silent

/** Bytes by source, as in the summary and events. */
export interface BytesBySource {
  local: number
  peers: number
  origin: number
}

/** Progress of a sync, for the progress bar. */
export interface SyncProgress {
  image: string
  version: string
  phase: string
  /** Non-zero bytes of the target version. */
  totalBytes: number
  /** Non-zero bytes in place and checked against their block prefix. */
  doneBytes: number
  bytes: BytesBySource
}

/** The result of a sync. */
export interface SyncSummary {
  image: string
  version: string
  /** The version that was at the output before (null: none known). */
  fromVersion: string | null
  out: string
  /** True when the output already held this version (nothing to do). */
  upToDate: boolean
  bytes: BytesBySource
  seconds: number
  size: number
  nonZeroBytes: number
  /** Blocks from any source that failed verification. */
  discardedBlocks: number
  /** Assembled chunks that failed their digest (fetched whole again). */
  discardedChunks: number
  /** Chunks fetched whole from the origin. */
  chunksFetched: number
  /** Blocks by source name. */
  blocksBySource: Record<string, number>
  usedDeltaPack: boolean
}

/** A sync's partial file, for an observer that serves it. */
export interface SyncStarted {
  manifest: Manifest
  envelope: Uint8Array
  tempPath: string
  /** Opens the partial file again, read-only, only while it is still the file the sync writes. */
  openTemp: () => Promise<FileHandle>
  isVerified: (chunk: number) => boolean
}

/**
 * What a sync tells an observer, so the swarm can serve an in-progress download:
 * the temp file and which chunks of it are verified, then the finished file.
 */
export interface SyncObserver {
  /** The temp file exists (sized, sparse); `isVerified(chunk)` tells what may be served from it. */
  started?: (info: SyncStarted) => void
  /** A chunk of the temp file was verified against its digest. */
  chunkVerified?: (chunk: number) => void
  /** The version is in place at `out`. */
  finished?: (info: { manifest: Manifest, envelope: Uint8Array, out: string }) => void
  /** The sync stopped without finishing (the temp file may be gone). */
  stopped?: () => void
}
