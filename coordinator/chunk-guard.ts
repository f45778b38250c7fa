/**
 * Keeps storage gc off the chunks of a publish in progress, inside one
 * coordinator process. A chunk is safe from gc when it is used by a live
 * version, younger than the gc grace period (its stored time is refreshed by
 * every upload and by every missing-chunks check that finds it present), or
 * claimed here while a gc runs: by a commit in progress, a missing-chunks
 * check or an upload. A claim that comes while gc is deleting that very chunk
 * waits for the deletion to finish, so the publish then sees the chunk missing
 * and uploads it again instead of counting on a chunk about to vanish.
 */

/** The watch of one gc run. */
export interface GcWatch {
  /** Whether a publish claimed the chunk since the run began (or a commit in progress holds it). */
  isClaimed: (cid: string) => boolean
  /** Deletes through `remove` unless the chunk is claimed; returns whether it deleted. Claims that arrive meanwhile wait for it. */
  deleteUnclaimed: (cid: string, remove: () => Promise<void>) => Promise<boolean>
  end: () => void
}

/** The guard shared by the image service (publish side) and storage gc. */
export interface ChunkGuard {
  /** A publish names these chunks; waits for a deletion of any of them in progress. */
  claim: (cids: readonly string[]) => Promise<void>
  /** A commit of these chunks is in progress until the returned release is called. */
  committing: (cids: readonly string[]) => () => void
  /** Starts watching for claims (one gc run at a time). */
  begin: () => GcWatch
}

/** Creates the guard. */
export function createChunkGuard (): ChunkGuard {
  let watch: Set<string> | null = null
  const deleting = new Map<string, Promise<void>>()
  const commits = new Set<readonly string[]>()

  return {
    async claim (cids) {
      if (watch != null) for (const c of cids) watch.add(c)
      if (deleting.size === 0) return
      for (const c of cids) {
        const p = deleting.get(c)
        if (p != null) await p.catch(() => {})
      }
    },
    committing (cids) {
      commits.add(cids)
      if (watch != null) for (const c of cids) watch.add(c)
      return () => { commits.delete(cids) }
    },
    begin () {
      if (watch != null) throw new Error('a storage gc is already watching')
      const own = new Set<string>()
      for (const list of commits) for (const c of list) own.add(c)
      watch = own
      return {
        isClaimed: (cid) => own.has(cid),
        async deleteUnclaimed (cid, remove) {
          // checked and registered in one synchronous step: a claim either comes before (kept) or waits for the deletion
          if (own.has(cid)) return false
          const p = remove()
          deleting.set(cid, p)
          try {
            await p
          } finally {
            deleting.delete(cid)
          }
          return true
        },
        end () {
          if (watch === own) watch = null
        }
      }
    }
  }
}
