/** Errors of the coordinator that never cross the wire (wire errors are in protocol/errors.ts). */

/** The configuration file or an init option is invalid; the coordinator does not start. */
export class ConfigError extends Error {
  static override name = 'ConfigError'
  override name = 'ConfigError'
}

/** The data dir is held by another running coordinator (level's lock); one class for both sides, in utils/. */
export { DataDirLockedError } from '../utils/errors.ts'

/** A response stream's client took no byte for the allowed time; the stream was aborted (web-stream.ts). */
export class StreamStalledError extends Error {
  static override name = 'StreamStalledError'
  override name = 'StreamStalledError'
}
