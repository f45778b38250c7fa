/**
 * The partial file beside the output, and its installation over the output,
 * safe against a local user who can write the output folder (docs/SECURITY.md
 * "Local user with write access to the output folder").
 *
 * Such a user can replace any name in that folder at any moment (a symlink to
 * another file, a file of their own, a FIFO) but cannot write into a 0600 file
 * we own. So the agent never opens those names following a symlink
 * (O_NOFOLLOW), creates the partial file itself (O_CREAT|O_EXCL, mode 0600),
 * and trusts a partial file of an earlier run only when it is provably that
 * same file: same device, inode, birth time and owner, recorded in the
 * checkpoint. Its verified-chunk bitmap is trusted only when the file was not
 * changed after the checkpoint (same ctime, which no user can set); otherwise
 * every chunk is hashed again. The rename over the output is checked
 * afterwards against the inode of the descriptor we hold.
 */
import {
  closeSync, constants, fchmodSync, fstatSync, fsync, fsyncSync, ftruncateSync, lstatSync, openSync, renameSync, unlinkSync, writeSync, type BigIntStats
} from 'node:fs'
import { open, rm, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { syncDir } from '../utils/atomic-write.ts'
import { readPaddedSync } from '../utils/read-full.ts'
import { createWriteCoalescer } from '../utils/write-coalescer.ts'
import { PARTIAL_CREATE_TRIES, WRITE_GATHER_BYTES } from './constants.ts'
import { OutputReplacedError, PartialFileError } from './errors.ts'

const { O_RDONLY, O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = constants

/** What proves a file is the one this agent created (JSON-safe: 64-bit numbers as decimal strings). */
export interface FileIdentity {
  dev: string
  ino: string
  /** Birth time, ns (statx; 0 where the file system has none). */
  birth: string
  uid: number
  /** Change time at the last checkpoint, ns: unchanged means nobody wrote the file since. */
  ctime: string
}

/**
 * How a partial file was opened: `trusted` keeps the checkpoint's bitmap, `rehash` keeps the
 * bytes but verifies every chunk again, `fresh` is a new empty file.
 */
export type PartialState = 'trusted' | 'rehash' | 'fresh'

/** An open partial file. */
export interface PartialFile {
  fd: number
  state: PartialState
  /** Why an earlier partial file was not trusted (for the log), when it was not. */
  reason?: string
}

/** The identity of an open file, from its descriptor. */
export function identityOf (fd: number): FileIdentity {
  const st = fstatSync(fd, { bigint: true })
  return { dev: st.dev.toString(), ino: st.ino.toString(), birth: st.birthtimeNs.toString(), uid: Number(st.uid), ctime: st.ctimeNs.toString() }
}

function sameInode (st: BigIntStats, id: FileIdentity): boolean {
  return st.dev.toString() === id.dev && st.ino.toString() === id.ino
}

/** Why `st` is not the file `id` names (a file we created, ours alone, regular), or undefined when it is. */
function notOurs (st: BigIntStats, id: FileIdentity): string | undefined {
  if (!st.isFile()) return 'it is not a regular file'
  if (!sameInode(st, id) || st.birthtimeNs.toString() !== id.birth) return 'it was replaced by another file'
  if (Number(st.uid) !== id.uid || (Number(st.mode) & 0o022) !== 0) return 'its owner or permissions changed'
  if (st.nlink !== 1n) return 'it has other hard links'
  return undefined
}

/** Opens `path` without following a symlink or blocking on a FIFO; undefined when there is nothing (or no regular file) to open. */
function openNoFollow (path: string, flags: number): number | undefined {
  try {
    return openSync(path, flags | O_NOFOLLOW | O_NONBLOCK)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    // ELOOP: a symlink; ENXIO: a FIFO without reader; ENOENT: nothing there
    if (code === 'ELOOP' || code === 'ENXIO' || code === 'ENOENT' || code === 'EISDIR') return undefined
    throw err
  }
}

/** Removes whatever `path` names (a file, a symlink: never what it points to); ignores nothing-there. */
function unlinkName (path: string): void {
  try {
    unlinkSync(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return
    if (code === 'EISDIR' || code === 'EPERM') {
      throw new PartialFileError(`${path} is a directory, not a partial file of ours; remove it and run again`, { cause: err })
    }
    throw err
  }
}

/** Creates the partial file afresh (mode 0600, never through a symlink), sized `size`. */
function createFresh (path: string, size: number): number {
  for (let i = 0; i < PARTIAL_CREATE_TRIES; i++) {
    unlinkName(path)
    let fd: number
    try {
      fd = openSync(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
    } catch (err) {
      // someone made the name again between our unlink and create: try again, a bounded number of times
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue
      throw err
    }
    try {
      ftruncateSync(fd, size)
    } catch (err) {
      closeSync(fd)
      throw err
    }
    return fd
  }
  throw new PartialFileError(`${path} was created again by someone else each of ${PARTIAL_CREATE_TRIES} times it was removed; ` +
    'another user is writing the output folder')
}

/**
 * Opens the partial file at `path` for an image of `size` bytes: the earlier
 * run's file when `recorded` proves it is ours (`trusted` when unchanged since
 * the checkpoint, else `rehash`), otherwise a fresh file (`fresh`).
 */
export function openPartialFile (path: string, recorded: FileIdentity | undefined, size: number): PartialFile {
  if (recorded != null) {
    const fd = openNoFollow(path, O_RDWR)
    if (fd != null) {
      const st = fstatSync(fd, { bigint: true })
      let reason = notOurs(st, recorded)
      if (reason == null && st.size !== BigInt(size)) reason = `it is ${st.size} bytes, not ${size}`
      if (reason == null) return { fd, state: st.ctimeNs.toString() === recorded.ctime ? 'trusted' : 'rehash' }
      closeSync(fd)
      return { fd: createFresh(path, size), state: 'fresh', reason: `the partial file ${path} is not the one this agent wrote (${reason}); starting it afresh` }
    }
    return { fd: createFresh(path, size), state: 'fresh', reason: `the partial file ${path} is gone or is not a regular file (a symlink?); starting it afresh` }
  }
  return { fd: createFresh(path, size), state: 'fresh' }
}

/** Opens our file at `path` again, read-only (to serve it to peers), only when it still is the file `id` names. */
export async function reopenOurs (path: string, id: FileIdentity): Promise<FileHandle> {
  const fh = await open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
  const reason = notOurs(await fh.stat({ bigint: true }), id)
  if (reason != null) {
    await fh.close()
    throw new PartialFileError(`${path} is not the file this agent wrote (${reason})`)
  }
  return fh
}

/**
 * Renames the partial file (open as `fd`) over `out`, then checks that `out` is
 * that very file. If someone swapped the name between our checks and the
 * rename, what landed at `out` is theirs: it is removed (never followed) and
 * OutputReplacedError thrown, so the output is never a file we did not write.
 */
export function installPartialFile (fd: number, temp: string, out: string): void {
  const id = identityOf(fd)
  const before = lstatIfAny(temp)
  if (before == null || !sameInode(before, id)) {
    throw new OutputReplacedError(`the partial file ${temp} was replaced or removed by someone else before it could be installed; ${out} was left as it was`)
  }
  fchmodSync(fd, installedMode(out))
  renameSync(temp, out)
  const after = lstatIfAny(out)
  if (after == null || !sameInode(after, id) || !after.isFile()) {
    if (after != null && !after.isDirectory()) unlinkName(out)
    throw new OutputReplacedError(`${out} was swapped by someone else while the verified image was installed; ` +
      'it was removed rather than left pointing at a file this agent did not write')
  }
}

/**
 * The mode of the installed image: the old output's permission bits when it is a
 * regular file (an admin's chmod survives updates), else 0644; never writable by
 * group or others, whatever the old file allowed. The partial file is 0600 only
 * while it is being written.
 */
function installedMode (out: string): number {
  const old = lstatIfAny(out)
  const bits = old?.isFile() === true ? Number(old.mode) & 0o777 : 0o644
  return bits & ~0o022
}

function lstatIfAny (path: string): BigIntStats | undefined {
  try {
    return lstatSync(path, { bigint: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/**
 * Whether `path` itself (not through a symlink) is the file an earlier sync
 * installed: a regular file with its size and mtime, and its device and inode
 * when they were recorded.
 */
export function isInstalledFile (path: string, installed: { size: number, mtimeMs: number, dev?: string, ino?: string }): boolean {
  let st
  try { st = lstatSync(path) } catch { return false }
  if (!st.isFile() || st.size !== installed.size || st.mtimeMs !== installed.mtimeMs) return false
  if (installed.ino == null) return true
  const id = lstatIfAny(path)
  return id != null && id.dev.toString() === installed.dev && id.ino.toString() === installed.ino
}

/**
 * Opens the installed output for reading (self-seed) only when it is a regular
 * file, not through a symlink; undefined otherwise. Its blocks are still
 * re-hashed against the manifest, so a changed file costs only bytes.
 */
export function openOutputForReading (path: string): number | undefined {
  const fd = openNoFollow(path, O_RDONLY)
  if (fd == null) return undefined
  if (!fstatSync(fd).isFile()) { closeSync(fd); return undefined }
  return fd
}

/** What an installed image is on disk (recorded to tell later whether it is still the file installed). */
export interface InstalledFile {
  size: number
  mtimeMs: number
  dev: string
  ino: string
}

/**
 * The partial file of a sync, open: the thin I/O under the sync ledger. Writes
 * and reads go to the descriptor (never the path again); writes at consecutive
 * offsets are gathered into one (utils/write-coalescer.ts) until `flush`, which
 * `read`, `sync`, `install` and `close` do first where they need the file as
 * written; `sync` makes the bytes durable before a checkpoint vouches for them.
 * The descriptor itself (`fd`) shows only what was flushed.
 */
export interface PartialImage extends PartialFile {
  readonly path: string
  /** The file's identity as of the last `sync` (what a checkpoint records). */
  identity: () => FileIdentity
  /** Writes all of `bytes` at image offset `position` (gathered with writes next to it until `flush`). */
  write: (bytes: Uint8Array, position: number) => void
  /** Writes what is gathered into the file. */
  flush: () => void
  /**
   * The `length` bytes at `offset` as written (zeros past the end): from what is gathered when all
   * of them are, else from the file. The view is valid until the next read, write or flush.
   */
  read: (offset: number, length: number) => Uint8Array
  /** fsync, then the identity as of now (its ctime: a later change by anyone makes the next run hash again). */
  sync: () => void
  /**
   * `sync` off the event loop (the thread pool's fsync): writes gathered so far go to the file, then the
   * fsync makes them durable while writes go on. Resolves to the identity as of that flush, which
   * is what the fsync vouches for; writes after it change the ctime, so a later run hashes again.
   */
  syncInBackground: () => Promise<FileIdentity>
  /**
   * Installs the file over `out` (installPartialFile), fsyncs the folder, closes it;
   * returns what the installed record needs.
   */
  install: (out: string) => Promise<InstalledFile>
  /** Syncs what it can (so the next run's checkpoint may trust it) and closes; idempotent. */
  close: () => void
  /** Closes and removes the file (a full disk must not stay full because of us); the name is unlinked, never followed. */
  discard: () => Promise<void>
}

/** fsync(2) in the thread pool. */
async function fsyncAsync (fd: number): Promise<void> {
  await new Promise<void>((resolve, reject) => { fsync(fd, err => { if (err != null) reject(err); else resolve() }) })
}

/** Opens the partial file at `path` (openPartialFile) as the sync's I/O. */
export function openPartialImage (path: string, recorded: FileIdentity | undefined, size: number): PartialImage {
  const opened = openPartialFile(path, recorded, size)
  const { fd } = opened
  let id = identityOf(fd)
  let isOpen = true
  let buffer = new Uint8Array(0)
  const writes = createWriteCoalescer((bytes, position) => {
    let written = 0
    while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written, position + written)
  }, WRITE_GATHER_BYTES)
  return {
    ...opened,
    path,
    identity: () => id,
    write: writes.write,
    flush: writes.flush,
    read (offset, length) {
      const gathered = writes.gathered(offset, length)
      if (gathered != null) return gathered
      if (writes.overlaps(offset, length)) writes.flush()
      if (buffer.length < length) buffer = new Uint8Array(length)
      const view = buffer.subarray(0, length)
      readPaddedSync(fd, view, offset)
      return view
    },
    sync () {
      writes.flush()
      fsyncSync(fd) // data first, then the bitmap that vouches for it
      id = identityOf(fd)
    },
    async syncInBackground () {
      writes.flush()
      const at = identityOf(fd)
      await fsyncAsync(fd)
      if (isOpen) id = at
      return at
    },
    async install (out) {
      writes.flush()
      fsyncSync(fd)
      installPartialFile(fd, path, out)
      const st = fstatSync(fd)
      const { dev, ino } = identityOf(fd)
      closeSync(fd)
      isOpen = false
      // best effort: the image is in place; a folder that cannot be opened or fsynced must not fail the sync now
      await syncDir(dirname(out)).catch(() => {})
      return { size: st.size, mtimeMs: st.mtimeMs, dev, ino }
    },
    close,
    async discard () {
      writes.drop() // the file goes: nothing gathered is worth writing (on a full disk it could not be)
      close()
      await rm(path, { force: true })
    }
  }

  function close (): void {
    if (!isOpen) return
    isOpen = false
    try {
      writes.flush()
      fsyncSync(fd)
      id = identityOf(fd)
    } catch {}
    closeSync(fd)
  }
}
