/** The chunker's public surface: BLAKE3, the block-aligned chunker, image scan, manifest building. */
export * from './blake3.ts'
