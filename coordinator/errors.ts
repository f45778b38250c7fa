/** Errors of the coordinator that never cross the wire (wire errors are in protocol/errors.ts). */

/** The configuration file or an init option is invalid; the coordinator does not start. */
export class ConfigError extends Error {
  static override name = 'ConfigError'
  override name = 'ConfigError'
}

/** The data dir is held by another running coordinator (level's lock). */
export class DataDirLockedError extends Error {
  static override name = 'DataDirLockedError'
  override name = 'DataDirLockedError'
}

/** A response stream's client took no byte for the allowed time; the stream was aborted (web-stream.ts). */
export class StreamStalledError extends Error {
  static override name = 'StreamStalledError'
  override name = 'StreamStalledError'
}
