/**
 * Atomic file replacement: the new content goes to a temp file beside the
 * target (same directory, so the same file system), is fsynced, renamed over
 * the target, and the directory is fsynced so the rename survives a power cut.
 * A reader sees the old file or the whole new one, never a part; any failure
 * (including an abort) removes the temp file and leaves the target as it was.
 *
 * The temp file is created exclusively (O_EXCL) under an unguessable name, so
 * another local user who can write the directory cannot make us write through
 * a symbolic link they planted. Its name is `.NAME.<random>.tmp`: a sweeper of
 * crash leftovers matches the `.tmp` suffix.
 */
import { randomBytes } from 'node:crypto'
import { link, open, rename, rm, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { AbortOptions } from './interface.ts'

/** Options of writeAtomic and writeFileAtomic. */
export interface AtomicWriteOptions extends AbortOptions {
  /** Mode of the new file (the umask applies); default 0o666. The replaced file's mode is not kept. */
  mode?: number
  /**
   * Create `path` only if it is absent (link(2) instead of rename(2)): when it exists, throws an
   * error with code EEXIST and leaves it as it is. For files written once (secrets, keys) that
   * two processes starting at once must not both write.
   */
  exclusive?: boolean
}

/** File-system answers to fsync on a directory that mean "not supported here", not "failed". */
const DIR_SYNC_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EISDIR', 'EBADF'])

/** The temp file name writeAtomic uses for `path` (exported for tests and sweepers). */
export function atomicTempPath (path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
}

/**
 * Replaces `path` atomically with what `fill` writes to the given handle (at
 * position 0 onwards); returns what `fill` returns. `fill` may use the handle's
 * write/writeFile but must not close it.
 */
export async function writeAtomic<T> (path: string, fill: (fh: FileHandle) => Promise<T>, options: AtomicWriteOptions = {}): Promise<T> {
  options.signal?.throwIfAborted()
  const tmp = atomicTempPath(path)
  const fh = await open(tmp, 'wx', options.mode ?? 0o666)
  let result: T
  try {
    try {
      result = await fill(fh)
      await fh.sync()
    } finally {
      await fh.close()
    }
    options.signal?.throwIfAborted()
    if (options.exclusive === true) {
      await link(tmp, path)
      await rm(tmp)
    } else {
      await rename(tmp, path)
    }
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {}) // the first failure is the one to report
    throw err
  }
  await syncDir(dirname(path))
  return result
}

/** Replaces `path` atomically with `data` (writeAtomic). */
export async function writeFileAtomic (path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  await writeAtomic(path, async (fh) => { await fh.writeFile(data) }, options)
}

/**
 * fsyncs a directory so a create, rename or unlink inside it is durable. File
 * systems that cannot fsync a directory (some network and FUSE ones) are
 * skipped: there is nothing more we could do there.
 */
export async function syncDir (dir: string): Promise<void> {
  let fh: FileHandle
  try {
    fh = await open(dir, 'r')
  } catch (err) {
    if (DIR_SYNC_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) return
    throw err
  }
  try {
    await fh.sync()
  } catch (err) {
    if (!DIR_SYNC_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) throw err
  } finally {
    await fh.close()
  }
}
