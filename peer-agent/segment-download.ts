/**
 * One compressed segment's bytes, downloaded whole into memory (at most its
 * table size, itself at most 4 MiB) so that segment-source.ts decodes it in
 * one call instead of through a zstd stream (docs/BENCHMARKS.md "### agent
 * CPU", round 4). The bytes are spooled as they arrive into a file of the data
 * dir (`ImageRecords.segmentSpool`): an agent killed mid-segment resumes it with
 * HTTP Range and If-Range (the segment's ETag is its CID) instead of
 * downloading it again, as the streamed decoder kept the blocks it had
 * decoded (test/reliability/agent-kill.test.ts). The spool is never fsynced
 * and never trusted: resumed bytes must match the segment's CID, and every
 * block is verified after decoding anyway.
 */
import { closeSync, constants, fstatSync, ftruncateSync, openSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { chunkCidOf } from '../chunker/blake3.ts'
import { readFullSync } from '../utils/read-full.ts'
import { releaseBytes } from '../utils/release-bytes.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import { PRIVATE_FILE_MODE } from './constants.ts'
import { SegmentMismatchError } from './errors.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { closeBody, rangeStartsAt } from './range-resume.ts'

const { O_RDWR, O_CREAT, O_NOFOLLOW, O_NONBLOCK } = constants

/** The segment to download: where, its table entry, and its name for messages. */
export interface SegmentDownload {
  route: string
  cid: string
  bytes: number
  /** e.g. "segment 3 of ws@v1" */
  label: string
}

/** The spool file of a segment in `dir` (the CID is [a-z0-9] only: the table's schema checks it). */
export function spoolPathOf (dir: string, cid: string): string {
  return join(dir, `${cid}.part`)
}

/**
 * Downloads `seg` into a buffer of exactly its size, resuming from (and spooling to) `spool` when
 * given. Throws SegmentMismatchError when the body is longer or shorter than the table says; a broken
 * connection throws as it is, and the next try resumes from the spool.
 */
export async function downloadSegment (
  components: { client: CoordinatorClient, logger: AgentLogger }, seg: SegmentDownload, spool: string | undefined, options: AbortOptions
): Promise<Uint8Array> {
  // its own memory (never a view into Node's shared pool), so it can be released as soon as it is decoded
  const frame: Uint8Array = Buffer.allocUnsafeSlow(seg.bytes)
  let fd = spool != null ? openSpool(spool, components.logger) : undefined
  try {
    let have = fd != null ? spooled(fd, frame) : 0
    if (have === seg.bytes) {
      // the whole segment was spooled (killed while its blocks were offered): no request at all
      if (chunkCidOf(frame).toString() === seg.cid) return frame
      have = restart(fd)
    }
    const resumed = have
    const headers: Record<string, string> = resumed > 0 ? { range: `bytes=${resumed}-`, 'if-range': `"${seg.cid}"` } : {}
    const res = await components.client.stream('GET', seg.route, undefined, { ...options, headers })
    if (resumed > 0 && (res.status !== 206 || !rangeStartsAt(res.headers.get('content-range'), resumed))) {
      if (res.status === 206) {
        // a range we did not ask for (a broken cache): start afresh on the next try
        restart(fd)
        await closeBody(res.body)
        throw new Error(`${seg.label}: asked from byte ${resumed}, answered ${res.headers.get('content-range') ?? 'no Content-Range'}`)
      }
      have = restart(fd) // 200: the whole segment (If-Range did not match, or no ranges here)
    }
    for await (const piece of res.body) {
      // the table said how big it is; a longer body is refused before anything is decoded
      if (have + piece.length > seg.bytes) throw new SegmentMismatchError(`${seg.label} is longer than the ${seg.bytes} bytes its table lists`)
      frame.set(piece, have)
      if (fd != null) fd = spoolWrite(fd, piece, have, spool!, components.logger)
      have += piece.length
    }
    // a broken connection throws above; a body that ends cleanly but short is not the segment the table lists
    if (have < seg.bytes) throw new SegmentMismatchError(`${seg.label} is ${have} bytes, its table lists ${seg.bytes}`)
    if (resumed > 0 && chunkCidOf(frame).toString() !== seg.cid) {
      // what the spool held was not the start of this segment (torn by a crash, or changed): all of it again
      restart(fd)
      throw new Error(`${seg.label} resumed from ${spool} does not match its CID ${seg.cid}; downloading it again`)
    }
    return frame
  } catch (err) {
    releaseBytes(frame)
    throw err
  } finally {
    if (fd != null) closeSync(fd)
  }
}

/** Removes a segment's spool file (its blocks are in the partial file now, or it is not worth keeping). */
export function dropSpool (spool: string | undefined): void {
  if (spool == null) return
  try {
    unlinkSync(spool) // not rmSync: that stats first, twice the system calls per segment
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

/** Opens (or creates, 0600) the spool file, never through a symlink; undefined (no spool, memory only) when that fails. */
function openSpool (path: string, logger: AgentLogger): number | undefined {
  let fd: number | undefined
  try {
    fd = openSync(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK, PRIVATE_FILE_MODE)
    if (fstatSync(fd).isFile()) return fd
  } catch (err) {
    logger.debug?.(`segment spool ${path} not used: ${(err as Error).message}`)
  }
  if (fd != null) closeSync(fd)
  return undefined
}

/** Reads what an earlier run spooled into `frame`; 0 (and an empty spool) when it is larger than the segment. */
function spooled (fd: number, frame: Uint8Array): number {
  const size = fstatSync(fd).size
  if (size > frame.length) return restart(fd)
  return readFullSync(fd, frame.subarray(0, size), 0)
}

/** Empties the spool; returns 0, the bytes held now. */
function restart (fd: number | undefined): number {
  if (fd != null) ftruncateSync(fd, 0)
  return 0
}

/** Appends a piece to the spool; on any error (a full data dir) the spool is given up and the download goes on in memory. */
function spoolWrite (fd: number, piece: Uint8Array, position: number, path: string, logger: AgentLogger): number | undefined {
  try {
    let written = 0
    while (written < piece.length) written += writeSync(fd, piece, written, piece.length - written, position + written)
    return fd
  } catch (err) {
    logger.debug?.(`segment spool ${path} given up: ${(err as Error).message}`)
    closeSync(fd)
    try { dropSpool(path) } catch {} // best effort: the next run empties or replaces it anyway
    return undefined
  }
}
