/**
 * Chunker defaults. Docs name these constants rather than repeating their
 * values; the measurements behind them are in docs/ARCHITECTURE.md "Chunk size".
 */

/** Fewest blocks a content-defined cut may leave in a chunk (a zero block or the image end may end one sooner). */
export const DEFAULT_MIN_BLOCKS = 4

/** Once a chunk has DEFAULT_MIN_BLOCKS, each further block ends it with probability 1 / this (a power of two: the cut mask is avg - 1). */
export const DEFAULT_AVG_BLOCKS = 16

/** A chunk is cut after this many blocks whatever the digests say. */
export const DEFAULT_MAX_BLOCKS = 64

/**
 * Bytes read from the image per read call. Large reads keep syscalls and JS
 * work per byte low; the scan holds one such buffer (plus the unfinished
 * chunk carried over), so memory stays bounded whatever the image size.
 */
export const DEFAULT_READ_BUFFER_BYTES = 8 * 1024 * 1024
