/** Unsigned LEB128 varints, as used by multiformats, for compact integer lists. */

/** Appends `value` (a non-negative safe integer) to `out` as a varint. */
export function pushVarint (out: number[], value: number): void {
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80)
    value = Math.floor(value / 0x80)
  }
  out.push(value)
}

/** Reads a varint at `pos`; returns the value and the position after it, or throws RangeError. */
export function readVarint (bytes: Uint8Array, pos: number): [value: number, next: number] {
  let value = 0
  let scale = 1
  for (let i = pos; i < bytes.length && i < pos + 8; i++) {
    const b = bytes[i]
    value += (b & 0x7f) * scale
    if ((b & 0x80) === 0) {
      if (b === 0 && i > pos) throw new RangeError('varint is not minimally encoded')
      return [value, i + 1]
    }
    scale *= 0x80
  }
  throw new RangeError('truncated or oversized varint')
}
