/**
 * Which chunks a peer holds (its have-map, one bit per chunk index) and which
 * peer fetches a chunk from the origin (the claim rule): pure functions every
 * agent computes alike, used by the block server, the session and the sync.
 */

/** A have-map: which chunk indices of one version a peer holds. */
export function bitmapHas (bitmap: Uint8Array, index: number): boolean {
  return (bitmap[index >> 3] & (1 << (index & 7))) !== 0
}

/** Sets bit `index` of a have-map. */
export function bitmapSet (bitmap: Uint8Array, index: number): void {
  bitmap[index >> 3] |= 1 << (index & 7)
}

/** Clears bit `index` of a have-map (a peer that said DONT_HAVE after all). */
export function bitmapClear (bitmap: Uint8Array, index: number): void {
  bitmap[index >> 3] &= ~(1 << (index & 7))
}

/**
 * The claim score of `peerId` for claim group `index` (rendezvous hashing):
 * among the peers syncing the same version, the one with the highest score
 * fetches the group's chunks from the origin. Every agent computes the same numbers: FNV-1a
 * (32-bit) over the UTF-8 peer id, then over the 4 little-endian bytes of the
 * index, then the murmur3 32-bit finaliser. docs/ARCHITECTURE.md "Swarm".
 */
export function claimScore (index: number, peerId: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < peerId.length; i++) {
    h ^= peerId.charCodeAt(i) & 0xff
    h = Math.imul(h, 0x01000193)
  }
  for (let k = 0; k < 4; k++) {
    h ^= (index >>> (8 * k)) & 0xff
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/**
 * Chunks claimed together: chunk `i` belongs to claim group `floor(i /
 * CLAIM_GROUP_CHUNKS)`, and a group has one owner. Each agent then fetches runs
 * of neighbouring chunks, which zstd compresses nearly as well as one agent's
 * whole download; owners per chunk scatter every agent's share across the
 * image and cost 1.12x the bytes on base.img with 6 agents (docs/BENCHMARKS.md
 * "swarm-corpus"). 64 chunks are about 5 MB at the chunker's default sizes.
 */
export const CLAIM_GROUP_CHUNKS = 64

/** The peer (of `peerIds`) that claims chunk `index` (by its claim group); ties broken by the smaller id. */
export function claimOwner (index: number, peerIds: readonly string[]): string | undefined {
  const group = Math.floor(index / CLAIM_GROUP_CHUNKS)
  let best: string | undefined
  let bestScore = -1
  for (const p of peerIds) {
    const s = claimScore(group, p)
    if (s > bestScore || (s === bestScore && best != null && p < best)) { best = p; bestScore = s }
  }
  return best
}
