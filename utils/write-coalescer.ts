/**
 * Writes at consecutive offsets gathered into one write: the sync places 4 KiB
 * blocks mostly in image order, and one write(2) per block cost a cold
 * install of a 196 MiB image ~0.4 s of CPU (docs/BENCHMARKS.md `### agent
 * CPU`). Any write that does not extend what is gathered flushes it first,
 * so the file ends up exactly as if every write had been made on its own, in
 * the same order. What is gathered is not in the file until `flush`: callers
 * flush before anything else reads the file or vouches for its bytes.
 */

/** Gathers consecutive writes. */
export interface WriteCoalescer {
  /** Writes all of `bytes` at `position`, now or at the next flush (the bytes are copied). */
  write: (bytes: Uint8Array, position: number) => void
  /** Writes what is gathered. */
  flush: () => void
  /**
   * The gathered bytes of [offset, offset + length) when every one of them is gathered (not in the
   * file yet), else undefined. The view is valid until the next write or flush.
   */
  gathered: (offset: number, length: number) => Uint8Array | undefined
  /** Whether any byte of [offset, offset + length) is gathered. */
  overlaps: (offset: number, length: number) => boolean
  /** Forgets what is gathered without writing it (the file is being removed). */
  drop: () => void
  /** Bytes gathered and not written yet. */
  readonly pending: number
}

/**
 * A coalescer over `writeAt` (which writes all of its bytes at a position), gathering up to
 * `capacity` bytes; a write of `capacity` bytes or more goes straight through.
 */
export function createWriteCoalescer (writeAt: (bytes: Uint8Array, position: number) => void, capacity: number): WriteCoalescer {
  let buffer: Uint8Array | undefined // allocated at the first write gathered
  let start = 0
  let length = 0

  function flush (): void {
    if (length === 0) return
    const bytes = buffer!.subarray(0, length)
    length = 0 // a failed write is not retried by the next flush: the caller's error ends the sync
    writeAt(bytes, start)
  }

  return {
    write (bytes, position) {
      if (length > 0 && position === start + length && length + bytes.length <= capacity) {
        buffer!.set(bytes, length)
        length += bytes.length
        return
      }
      flush()
      if (bytes.length >= capacity) {
        writeAt(bytes, position)
        return
      }
      buffer ??= new Uint8Array(capacity)
      buffer.set(bytes, 0)
      start = position
      length = bytes.length
    },
    flush,
    gathered (offset, size) {
      if (length === 0 || offset < start || offset + size > start + length) return undefined
      return buffer!.subarray(offset - start, offset - start + size)
    },
    overlaps: (offset, size) => length > 0 && offset < start + length && offset + size > start,
    drop () { length = 0 },
    get pending () { return length }
  }
}
