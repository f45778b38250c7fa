/** Errors of the peer agent (wire errors are in protocol/errors.ts). */
import { HashMismatchError, NotFoundError } from '../protocol/errors.ts'

/** The coordinator could not be reached (network error or 5xx) after every retry: the client's error. */
export { CoordinatorUnreachableError } from '../client/errors.ts'

/** The disk holding the output is full; the old image is intact. */
export class DiskFullError extends Error {
  static override name = 'DiskFullError'
  override name = 'DiskFullError'
}

/** Whether a file-system error means the disk (or the user's quota) is full: final, never retried. */
export function isDiskFull (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code
  return code === 'ENOSPC' || code === 'EDQUOT'
}

/** Another agent process holds the data directory; one class for both sides, in utils/. */
export { DataDirLockedError } from '../utils/errors.ts'

/** The data dir is a folder other users may write to (world-writable or sticky, like /tmp): not used. */
export class DataDirUnsafeError extends Error {
  static override name = 'DataDirUnsafeError'
  override name = 'DataDirUnsafeError'
}

/**
 * A delta pack applied while it downloads was started afresh by the download (a retry that could not
 * resume it): the apply starts over from the new file's start. Caught inside delta-pack-source.ts.
 */
export class PackRestartedError extends Error {
  static override name = 'PackRestartedError'
  override name = 'PackRestartedError'
}

/** Blocks or a chunk could not be obtained from any source (every copy failed verification). */
export class SyncIncompleteError extends Error {
  static override name = 'SyncIncompleteError'
  override name = 'SyncIncompleteError'
}

/**
 * Chunks of the version that the coordinator cannot serve (its stored copy is damaged or gone) and no other
 * source had; what is verified so far is kept for the next run.
 */
export class ChunkUnavailableError extends Error {
  static override name = 'ChunkUnavailableError'
  override name = 'ChunkUnavailableError'
}

/** Whether the coordinator's answer for a chunk of a version it holds says its stored copy is damaged (422) or gone (404). */
export function isUnavailableAtOrigin (err: unknown): boolean {
  return err instanceof HashMismatchError || err instanceof NotFoundError
}

/** The pinned coordinator key does not match the configured one, or cannot be read. */
export class KeyPinError extends Error {
  static override name = 'KeyPinError'
  override name = 'KeyPinError'
}

/** The output path is a directory, or an existing file this agent did not install (replacing it needs --force). */
export class OutputRefusedError extends Error {
  static override name = 'OutputRefusedError'
  override name = 'OutputRefusedError'
}

/** The partial file cannot be made ours (a directory in its place, or someone keeps re-creating it). */
export class PartialFileError extends Error {
  static override name = 'PartialFileError'
  override name = 'PartialFileError'
}

/** The output or partial file was swapped by someone else during installation; nothing of theirs is left installed. */
export class OutputReplacedError extends Error {
  static override name = 'OutputReplacedError'
  override name = 'OutputReplacedError'
}

/** The coordinator's signed "latest" names an older version than this agent installed or has seen (a replay or a rollback). */
export class DowngradeRefusedError extends Error {
  static override name = 'DowngradeRefusedError'
  override name = 'DowngradeRefusedError'
}

/**
 * The coordinator's segment table or a segment does not fit the verified manifest (wrong version,
 * counts, or length): segments are not used, block batches are.
 */
export class SegmentMismatchError extends Error {
  static override name = 'SegmentMismatchError'
  override name = 'SegmentMismatchError'
}
