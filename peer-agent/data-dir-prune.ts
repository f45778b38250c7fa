/**
 * Pruning of the agent's data dir: delta packs and signed manifests of an
 * image that no install or resume can use any more (a pack of an abandoned
 * update, a manifest left by an interrupted switch of versions). Kept: the
 * installed version's manifest (self-seeding, up-to-date checks) and the one
 * pack an interrupted sync resumes (`<installed>..<checkpoint version>.pack`).
 * Only regular files with the names the agent writes are touched; a symbolic
 * link planted there is removed as a link, never followed.
 */
import { lstat, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'

/** What the data dir says must stay, by file name (already made safe). */
export interface PruneKeep {
  /** `<version>.manifest` of the installed version. */
  manifest?: string
  /** `<from>..<to>.pack` of the sync that would resume. */
  pack?: string
}

/** What a prune removed. */
export interface PruneResult {
  packs: number
  manifests: number
  bytes: number
}

/** The names among `names` to delete (pure: the rule, tested without a disk). */
export function planPrune (names: { packs: readonly string[], manifests: readonly string[] }, keep: PruneKeep): { packs: string[], manifests: string[] } {
  return {
    // a pack's `.etag` sidecar (its download's validator) goes and stays with it
    packs: names.packs.filter(n => (n.endsWith('.pack') && n !== keep.pack) || (n.endsWith('.pack.etag') && n !== `${keep.pack ?? ''}.etag`)),
    manifests: names.manifests.filter(n => n.endsWith('.manifest') && n !== keep.manifest)
  }
}

async function names (dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter(d => d.isFile() || d.isSymbolicLink()).map(d => d.name)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return []
    throw err
  }
}

async function remove (dir: string, list: readonly string[]): Promise<number> {
  let bytes = 0
  for (const n of list) {
    const path = join(dir, n)
    const st = await lstat(path).catch(() => undefined)
    if (st == null) continue
    if (st.isFile()) bytes += st.size
    await rm(path, { force: true })
  }
  return bytes
}

/** Deletes the packs under `packsDir` and manifests under `manifestsDir` (one image's directories) that `keep` does not name. */
export async function pruneImageData (dirs: { packsDir: string, manifestsDir: string }, keep: PruneKeep): Promise<PruneResult> {
  const plan = planPrune({ packs: await names(dirs.packsDir), manifests: await names(dirs.manifestsDir) }, keep)
  const bytes = await remove(dirs.packsDir, plan.packs) + await remove(dirs.manifestsDir, plan.manifests)
  return { packs: plan.packs.length, manifests: plan.manifests.length, bytes }
}
