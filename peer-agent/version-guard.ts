/**
 * The rule that keeps an agent from moving back (docs/SECURITY.md "Downgrade"):
 * a signed "latest" is followed only when it is not older than the version
 * installed at the output nor than the newest "latest" this agent has seen for
 * the image. Pure: the sync reads and stores the state (DATA_FILES.latestSeen).
 */
import type { VersionPointer } from '../protocol/version-pointer.ts'

/** The newest signed "latest" an agent has seen for an image (stored in its data dir). */
export interface SeenPointer {
  version: string
  seq: number
  time: number
}

/** The version installed at the output, with its publish sequence when known (installed through a signed pointer). */
export interface InstalledVersion {
  version: string
  seq?: number
}

/**
 * Why following `pointer` would be a downgrade (a one-line message for the
 * user), or undefined when it may be followed. Staying on the installed
 * version is never a downgrade, whatever was seen before.
 */
export function downgradeOf (pointer: VersionPointer, seen: SeenPointer | undefined, installed: InstalledVersion | undefined): string | undefined {
  if (installed != null && installed.version === pointer.version) return undefined
  const floors: Array<{ version: string, seq: number, what: string }> = []
  if (installed?.seq != null) floors.push({ version: installed.version, seq: installed.seq, what: 'installed' })
  if (seen != null) floors.push({ version: seen.version, seq: seen.seq, what: `announced as latest at ${new Date(seen.time * 1000).toISOString()}` })
  const floor = floors.sort((a, b) => b.seq - a.seq)[0]
  if (floor == null || pointer.seq >= floor.seq) return undefined
  return `the coordinator's signed latest version of ${pointer.image} is ${pointer.version} (published #${pointer.seq})` +
    `, older than ${floor.version} (published #${floor.seq}, ${floor.what}); ` +
    `refusing to move back (a replayed or rewritten answer, or a version retired on the coordinator)` +
      `; to install ${pointer.version} on purpose, name it: ${pointer.image}@${pointer.version}`
}

/** The seen pointer to store after `pointer` was accepted (unchanged when it is not newer). */
export function newestSeen (pointer: VersionPointer, seen: SeenPointer | undefined): SeenPointer {
  if (seen != null && seen.seq >= pointer.seq) return seen
  return { version: pointer.version, seq: pointer.seq, time: pointer.time }
}
