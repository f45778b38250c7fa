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

/** How to answer a GET of an immutable file with a strong ETag (RFC 9110 sections 13.1.2, 13.1.5, 14). */
export type ConditionalAnswer =
  | { status: 304 }
  | { status: 416 }
  | { status: 200, start: 0, end: number }
  | { status: 206, start: number, end: number }

/**
 * The answer to `If-None-Match`, `If-Range` and `Range` for a file of `size`
 * bytes whose strong validator is `etag` (quoted): 304 when the client holds
 * it, a range only when `If-Range` (if any) still names this file, else the
 * whole file.
 */
export function conditionalAnswer (headers: { ifNoneMatch?: string, ifRange?: string, range?: string }, etag: string, size: number): ConditionalAnswer {
  if (headers.ifNoneMatch != null && headers.ifNoneMatch.split(',').some(t => t.trim() === etag || t.trim() === '*')) return { status: 304 }
  const range = headers.ifRange == null || headers.ifRange === etag ? parseRangeHeader(headers.range, size) : undefined
  if (range === 'unsatisfiable') return { status: 416 }
  if (range == null) return { status: 200, start: 0, end: size - 1 }
  return { status: 206, start: range.start, end: range.end }
}
