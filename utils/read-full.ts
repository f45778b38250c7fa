/**
 * Reading a whole range of a file: a single read(2) may return fewer bytes
 * than asked for (signals, network and FUSE file systems, a file growing or
 * shrinking), so every reader that needs N bytes loops until it has them or
 * reaches the end of the file.
 */
import { closeSync, constants as fsc, fstatSync, openSync, readSync } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { NotRegularFileError } from './errors.ts'

/** Fills `buf` from `fh` at file offset `position`; returns the bytes read, fewer than `buf.length` only at end of file. */
export async function readFull (fh: FileHandle, buf: Uint8Array, position: number): Promise<number> {
  let done = 0
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done)
    if (bytesRead === 0) break
    done += bytesRead
  }
  return done
}

/**
 * readFull on a file descriptor, synchronously: for hot loops over
 * page-cached files, where a FileHandle round trip costs more than the read.
 */
export function readFullSync (fd: number, buf: Uint8Array, position: number): number {
  let done = 0
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, position + done)
    if (n === 0) break
    done += n
  }
  return done
}

/** readFullSync, with the rest of `buf` past the end of the file zeroed (a short file reads as zero-padded); the bytes read. */
export function readPaddedSync (fd: number, buf: Uint8Array, position: number): number {
  const read = readFullSync(fd, buf, position)
  buf.fill(0, read)
  return read
}

/**
 * Opens `path` for reading only if it is a regular file, itself (not through a symlink): a file
 * found earlier (the host index) may have been replaced since by a local user, with a FIFO
 * (opening it would wait for a writer for ever) or a symlink to a file only we may read. Throws otherwise.
 */
export function openRegularFile (path: string): number {
  const fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK)
  if (!fstatSync(fd).isFile()) {
    closeSync(fd)
    throw new NotRegularFileError(`${path} is not a regular file`)
  }
  return fd
}
