/** The chunker's public surface: BLAKE3, the block-aligned chunker, image scan, manifest building. */
export * from './blake3.ts'
export * from './constants.ts'
export * from './errors.ts'
export * from './block-chunker.ts'
export * from './image-scan.ts'
export * from './build-manifest.ts'
