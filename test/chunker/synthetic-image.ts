/**
 * Synthetic raw images from a small JSON recipe, for scan tests and golden
 * vectors: seeded random blocks, zero runs, copies of earlier blocks (content
 * that repeats at another offset) and nearly-zero blocks (one non-zero byte
 * at the start or end, which must not be taken for a hole).
 */
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import { createPrng } from '../helpers/images.ts'

/** One run of blocks of a recipe. */
export type Segment =
  /** `blocks` blocks of bytes from the recipe's PRNG stream (mulberry32, test/helpers/images.ts createPrng). */
  | { random: number }
  /** `blocks` all-zero blocks. */
  | { zero: number }
  /** A copy of `blocks` blocks starting at image block `from` (already written). */
  | { copy: number, from: number }
  /** One block that is zero except byte `at` (0 or 4095), which is 1. */
  | { nearlyZero: number }

/** A reproducible image description. */
export interface Recipe {
  seed: number
  segments: Segment[]
}

/** The image bytes a recipe describes. */
export function buildImage (recipe: Recipe): Uint8Array {
  const blocks = recipe.segments.reduce((n, s) => n + ('random' in s ? s.random : 'zero' in s ? s.zero : 'copy' in s ? s.copy : 1), 0)
  const out = new Uint8Array(blocks * BLOCK_SIZE)
  const prng = createPrng(recipe.seed)
  let b = 0
  for (const s of recipe.segments) {
    if ('random' in s) {
      out.set(prng.bytes(s.random * BLOCK_SIZE), b * BLOCK_SIZE)
      b += s.random
    } else if ('zero' in s) {
      b += s.zero
    } else if ('copy' in s) {
      if (s.from + s.copy > b) throw new Error('a copy must come from blocks already written')
      out.copyWithin(b * BLOCK_SIZE, s.from * BLOCK_SIZE, (s.from + s.copy) * BLOCK_SIZE)
      b += s.copy
    } else {
      out[b * BLOCK_SIZE + s.nearlyZero] = 1
      b += 1
    }
  }
  return out
}
