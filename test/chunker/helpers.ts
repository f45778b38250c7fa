/** Shared helpers of the chunker tests: temp dirs, seeded bytes, and the real `b3sum`. */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A fresh temp dir and a function that removes it. */
export function tempDir (prefix = 'trimswarm-chunker-'): { dir: string, cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return { dir, cleanup: () => { rmSync(dir, { recursive: true, force: true }) } }
}

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function seededBytes (length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length)
  let x = (seed | 0) || 0x9e3779b9
  let i = 0
  for (; i + 4 <= length; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    out[i] = x; out[i + 1] = x >>> 8; out[i + 2] = x >>> 16; out[i + 3] = x >>> 24
  }
  for (; i < length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    out[i] = x
  }
  return out
}

/** `b3sum` hex digests of files, in the order given (runs the real binary). */
export function b3sum (paths: string[]): string[] {
  if (paths.length === 0) return []
  const out = execFileSync('b3sum', ['--no-names', ...paths], { encoding: 'utf8', maxBuffer: 64 << 20 })
  const lines = out.trim().split('\n')
  if (lines.length !== paths.length) throw new Error(`b3sum printed ${lines.length} lines for ${paths.length} files`)
  return lines
}
