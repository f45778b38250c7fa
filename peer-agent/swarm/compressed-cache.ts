/**
 * The compressed forms of recently sent or received chunks, bounded in bytes (least recently used
 * out first), so that a chunk sent to several peers is compressed once. An entry may record that a
 * chunk is not worth compressing (its frame would not be smaller enough), so it is not tried again.
 * A frame that is a view of a larger buffer (zlib's output buffer, a received noise message) is
 * kept as a copy of its own bytes: the view would hold the whole buffer, 2-3x what is counted.
 */

/** A chunk's cached compressed form: its zstd frame, or null when it goes uncompressed. */
export interface CompressedEntry {
  /** The chunk's length in bytes (what it decodes to). */
  rawLength: number
  frame: Uint8Array | null
}

/** `frame` itself when it spans its whole buffer, else a copy of its bytes (a plain Uint8Array, whatever `frame` is). */
function ownBytes (frame: Uint8Array | null): Uint8Array | null {
  if (frame == null || (frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength)) return frame
  return new Uint8Array(frame)
}

/** Bytes counted for an entry besides its frame (key, object): keeps a cache of null entries bounded too. */
const ENTRY_OVERHEAD_BYTES = 64

/** An LRU of compressed chunks keyed by image@version and item: a chunk's index, or a key of some of its blocks. */
export interface CompressedCache {
  get: (version: string, item: number | string) => CompressedEntry | undefined
  set: (version: string, item: number | string, entry: CompressedEntry) => void
  /** Forgets every chunk of `version` (no longer served). */
  drop: (version: string) => void
  /** Bytes held (frames plus a small overhead per entry). */
  readonly bytes: number
}

/** A cache holding at most `maxBytes` (0: holds nothing). */
export function createCompressedCache (maxBytes: number): CompressedCache {
  const entries = new Map<string, CompressedEntry & { version: string }>()
  let bytes = 0
  const sizeOf = (e: CompressedEntry): number => ENTRY_OVERHEAD_BYTES + (e.frame?.length ?? 0)
  const keyOf = (version: string, item: number | string): string => `${version}#${item}`

  function remove (key: string): void {
    const e = entries.get(key)
    if (e == null) return
    entries.delete(key)
    bytes -= sizeOf(e)
  }

  return {
    get (version, item) {
      const key = keyOf(version, item)
      const e = entries.get(key)
      if (e == null) return undefined
      // most recently used last: Map keeps insertion order
      entries.delete(key)
      entries.set(key, e)
      return e
    },
    set (version, item, entry) {
      const key = keyOf(version, item)
      remove(key)
      const size = sizeOf(entry)
      if (size > maxBytes) return
      entries.set(key, { rawLength: entry.rawLength, frame: ownBytes(entry.frame), version })
      bytes += size
      for (const [oldest] of entries) {
        if (bytes <= maxBytes) break
        remove(oldest)
      }
    },
    drop (version) {
      for (const [key, e] of entries) if (e.version === version) remove(key)
    },
    get bytes () { return bytes }
  }
}
