/**
 * A manifest's blocks grouped by their 8-byte BLAKE3 prefix: both sides dedupe
 * by prefix (a block is fetched once per prefix and written wherever it
 * occurs), so the coordinator cuts segments from the groups' first blocks
 * (segments.ts `distinctBlocks`) and the agent's ledger keeps one missing flag
 * per group. Numbers only, no BigInt and no Map per block: a `Map<bigint, ...>`
 * keyed by prefix cost the agent a BigInt per lookup, several per block.
 */
import { BLOCK_PREFIX_BYTES } from './constants.ts'

/** Blocks grouped by prefix. */
export interface PrefixGroups {
  /** The group of every block; groups are numbered in order of their first block. */
  groupOf: Uint32Array
  /** The first block of every group, ascending (group g's is firsts[g]). */
  firsts: Uint32Array
}

/** Every group's blocks, ascending, in one array (CSR): group g's are members[starts[g] .. starts[g + 1]). */
export interface GroupMembers {
  starts: Uint32Array
  members: Uint32Array
}

/** Groups the blocks of `blockPrefixes` (8 bytes per block) by prefix. */
export function groupByPrefix (blockPrefixes: Uint8Array): PrefixGroups {
  const n = blockPrefixes.length / BLOCK_PREFIX_BYTES
  const view = new DataView(blockPrefixes.buffer, blockPrefixes.byteOffset, blockPrefixes.byteLength)
  // an open-addressing table of the prefixes as two 32-bit halves, each slot holding its group + 1 (0: empty)
  let cap = 16
  while (cap < n * 2) cap *= 2
  const mask = cap - 1
  const his = new Uint32Array(cap)
  const los = new Uint32Array(cap)
  const slotGroup = new Uint32Array(cap)
  const groupOf = new Uint32Array(n)
  const firsts = new Uint32Array(n)
  let groups = 0
  for (let i = 0; i < n; i++) {
    const hi = view.getUint32(i * BLOCK_PREFIX_BYTES)
    const lo = view.getUint32(i * BLOCK_PREFIX_BYTES + 4)
    let slot = (Math.imul(hi ^ Math.imul(lo, 0x9e3779b1), 0x85ebca6b) >>> 0) & mask
    while (slotGroup[slot] !== 0 && (his[slot] !== hi || los[slot] !== lo)) slot = (slot + 1) & mask
    if (slotGroup[slot] === 0) {
      his[slot] = hi
      los[slot] = lo
      firsts[groups] = i
      slotGroup[slot] = ++groups
    }
    groupOf[i] = slotGroup[slot] - 1
  }
  return { groupOf, firsts: firsts.slice(0, groups) }
}

/** The blocks of every group (counting sort of `groupOf`, so each group's blocks stay ascending). */
export function groupMembers (groups: PrefixGroups): GroupMembers {
  const { groupOf } = groups
  const starts = new Uint32Array(groups.firsts.length + 1)
  for (let i = 0; i < groupOf.length; i++) starts[groupOf[i] + 1]++
  for (let g = 0; g < groups.firsts.length; g++) starts[g + 1] += starts[g]
  const next = starts.slice(0, groups.firsts.length)
  const members = new Uint32Array(groupOf.length)
  for (let i = 0; i < groupOf.length; i++) members[next[groupOf[i]]++] = i
  return { starts, members }
}
