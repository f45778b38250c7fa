/** Errors of the chunker (wire errors are in protocol/errors.ts). */

/** The image file cannot be chunked: missing, unreadable, a directory, empty, or not a whole number of blocks. */
export class InvalidImageError extends Error {
  static override name = 'InvalidImageError'
  override name = 'InvalidImageError'
}

/** Chunking parameters out of range (min <= avg <= max, avg a power of two, max within MAX_CHUNK_BLOCKS). */
export class InvalidChunkingError extends Error {
  static override name = 'InvalidChunkingError'
  override name = 'InvalidChunkingError'
}
