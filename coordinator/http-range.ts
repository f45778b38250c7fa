/**
 * HTTP Range requests (RFC 9110 section 14) for files served whole or in
 * part, such as delta packs: one `bytes=` range is honoured; anything the
 * server may ignore (other units, several ranges, bad syntax) means "send the
 * whole file".
 */

/** An inclusive byte range of a file. */
export interface ByteRange {
  start: number
  /** Inclusive. */
  end: number
}

/**
 * The range a `Range` header asks of a file of `size` bytes: undefined when
 * there is none (or it is one the server may ignore), 'unsatisfiable' for a
 * 416, else the inclusive range clipped to the file.
 */
export function parseRangeHeader (header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (header == null) return undefined
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header)
  if (m == null) return undefined // several ranges or another unit: ignoring Range is allowed
  const [, a, b] = m
  if (a === '' && b === '') return undefined
  if (a === '') {
    // suffix range: the last N bytes
    const n = Number(b)
    if (n === 0) return 'unsatisfiable'
    if (size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(a)
  if (!Number.isSafeInteger(start) || start >= size) return 'unsatisfiable'
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1)
  if (!Number.isSafeInteger(end) || end < start) return undefined
  return { start, end }
}
