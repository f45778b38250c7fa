/** Errors of the Node-side helpers; the subsystems re-export the ones they throw through these helpers. */

/** The data dir is held by another running process (data-dir-lock.ts); the caller says which kind. */
export class DataDirLockedError extends Error {
  static override name = 'DataDirLockedError'
  override name = 'DataDirLockedError'
}

/** A path expected to be a regular file is something else now (a FIFO, a device, a directory); a symlink fails its open (ELOOP). */
export class NotRegularFileError extends Error {
  static override name = 'NotRegularFileError'
  override name = 'NotRegularFileError'
}
