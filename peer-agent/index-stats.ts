/**
 * What a host-index refresh did, and its one line for people. Apart from
 * host-index.ts so the sync can log it without loading the database library.
 */
import { formatBytes, plural } from './progress-reporter.ts'

/** What one refresh did. */
export interface RefreshStats {
  files: number
  unchanged: number
  hashed: number
  removed: number
  bytesHashed: number
  blocks: number
  warnings: number
  seconds: number
}

/**
 * One line for people on a refresh: what it found, not just counters ("0 hashed" right after a
 * build in another process read as if nothing had been indexed).
 */
export function describeRefresh (s: RefreshStats): string {
  const took = `${s.seconds.toFixed(1)} s`
  const warnings = s.warnings > 0 ? `, ${plural(s.warnings, 'warning')}` : ''
  if (s.hashed === 0 && s.removed === 0) return `host index: ${plural(s.files, 'file')}, all unchanged since the last build (checked in ${took}${warnings})`
  return `host index: ${plural(s.files, 'file')}: ${s.hashed} new or changed hashed (${formatBytes(s.bytesHashed)}, ${plural(s.blocks, 'block')})` +
    `, ${s.unchanged} unchanged, ${s.removed} dropped, in ${took}${warnings}`
}
