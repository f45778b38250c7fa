/**
 * Coalesces the sync's block writes: blocks placed at consecutive file
 * offsets (what a segment, a batch or a delta pack delivers, in image order)
 * go out as one write of up to `maxBytes` instead of one system call per
 * 4 KiB block (50,000 writes for a cold install of base.img; docs/BENCHMARKS.md
 * `## origin segments`). Whoever reads the file back or fsyncs it calls
 * `flush()` first.
 */

/** A write-behind buffer over a positional write. */
export interface CoalescedWriter {
  /** Writes `data` at `pos`: appended to the pending run when it continues it, else after a flush. */
  write: (data: Uint8Array, pos: number) => void
  /** Writes the pending run (a no-op when there is none). */
  flush: () => void
}

/** Default pending run: 1 MiB. */
export const COALESCED_WRITE_BYTES = 1024 * 1024

/** Creates a coalescing writer over `writeAt` (which writes all of `data` at `pos`). */
export function createCoalescedWriter (writeAt: (data: Uint8Array, pos: number) => void, maxBytes: number = COALESCED_WRITE_BYTES): CoalescedWriter {
  const buf = new Uint8Array(maxBytes)
  let start = 0
  let len = 0
  const flush = (): void => {
    if (len === 0) return
    const n = len
    len = 0
    writeAt(buf.subarray(0, n), start)
  }
  return {
    write (data, pos) {
      if (len > 0 && (pos !== start + len || len + data.length > maxBytes)) flush()
      if (data.length >= maxBytes) {
        writeAt(data, pos)
        return
      }
      if (len === 0) start = pos
      buf.set(data, len)
      len += data.length
    },
    flush
  }
}
