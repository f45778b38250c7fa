/**
 * The blocks of two versions of an image grouped by prefix together (the
 * older version's first): which blocks of the new version the old one holds
 * (self-seed) and which it does not (the delta pack's), numbers only. A
 * `Map<bigint, ...>` of the prefixes cost ~0.1 s of CPU per 50,000 blocks
 * (docs/BENCHMARKS.md "#### Update at 100 mbit (session 9)").
 */
import { BLOCK_PREFIX_BYTES } from '../protocol/constants.ts'
import { groupByPrefix, type PrefixGroups } from '../protocol/prefix-groups.ts'

/** Prefix groups over the old version's blocks, then the new version's (new block i is `oldCount + i`). */
export interface VersionGroups extends PrefixGroups {
  oldCount: number
}

/** Groups the blocks of both versions by prefix. */
export function groupVersions (oldPrefixes: Uint8Array, newPrefixes: Uint8Array): VersionGroups {
  const both = new Uint8Array(oldPrefixes.length + newPrefixes.length)
  both.set(oldPrefixes)
  both.set(newPrefixes, oldPrefixes.length)
  return { ...groupByPrefix(both), oldCount: oldPrefixes.length / BLOCK_PREFIX_BYTES }
}

/** The first block of the old version with the prefix of new block `block`, or -1 when the old version has none. */
export function oldBlockOf (groups: VersionGroups, block: number): number {
  const first = groups.firsts[groups.groupOf[groups.oldCount + block]]
  return first < groups.oldCount ? first : -1
}

/** Whether new block `block` is the first with its prefix in both versions (not in the old one, not earlier in the new). */
export function isFirstNew (groups: VersionGroups, block: number): boolean {
  return groups.firsts[groups.groupOf[groups.oldCount + block]] === groups.oldCount + block
}
