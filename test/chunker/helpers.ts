/** Chunker test helper: many files through one run of the real `b3sum` (test/helpers/images.ts has the one-file form). */
import { execFileSync } from 'node:child_process'

/** `b3sum` hex digests of files, in the order given. */
export function b3sumMany (paths: string[]): string[] {
  if (paths.length === 0) return []
  const out = execFileSync('b3sum', ['--no-names', ...paths], { encoding: 'utf8', maxBuffer: 64 << 20 })
  const lines = out.trim().split('\n')
  if (lines.length !== paths.length) throw new Error(`b3sum printed ${lines.length} lines for ${paths.length} files`)
  return lines
}
