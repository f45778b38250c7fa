/**
 * The origin's block batch slots, shared fairly. A batch stream holds a zstd
 * context (up to 2^windowLog bytes of window) for as long as its client takes
 * to read it, so only `maxSlots` run at once and the rest wait. Without shares
 * one token, or one group's tokens, could hold every slot with requests it
 * never reads, and everyone else would wait behind it: a caller holds at most
 * `maxPerPrincipal` slots, and the callers of one group together at most
 * `maxPerGroup`. A waiter that may not run yet lets those behind it pass.
 */

/** Who asks for a slot: the principal (one token or user) and its groups. */
export interface SlotOwner {
  principal: string
  groups: readonly string[]
}

/** Options of createBatchSlots. */
export interface BatchSlotsInit {
  maxSlots: number
  maxPerPrincipal: number
  maxPerGroup: number
}

/** The slots. */
export interface BatchSlots {
  /** Waits for a slot `owner` may take; resolves to its release (idempotent). Rejects with the signal's reason if aborted first. */
  acquire: (owner: SlotOwner, signal?: AbortSignal) => Promise<() => void>
  /** Slots held now. */
  active: () => number
  /** Requests waiting now. */
  waiting: () => number
}

/**
 * The default share of one principal or group: all slots but a quarter (at least one), which stay free for
 * everyone else. A fleet of agents behind one token (the usual set-up) keeps most of the origin, and one token
 * or group that never reads its streams still leaves others a slot at once.
 */
export function defaultShare (maxSlots: number): number {
  return Math.max(1, maxSlots - Math.max(1, Math.floor(maxSlots / 4)))
}

interface Waiter {
  owner: SlotOwner
  wake: () => void
}

/** Creates the slots. */
export function createBatchSlots (init: BatchSlotsInit): BatchSlots {
  let active = 0
  const byPrincipal = new Map<string, number>()
  const byGroup = new Map<string, number>()
  const waiters: Waiter[] = []

  const add = (map: Map<string, number>, key: string, n: number): void => {
    const v = (map.get(key) ?? 0) + n
    if (v === 0) map.delete(key)
    else map.set(key, v)
  }
  const mayRun = (owner: SlotOwner): boolean =>
    active < init.maxSlots &&
    (byPrincipal.get(owner.principal) ?? 0) < init.maxPerPrincipal &&
    owner.groups.every(g => (byGroup.get(g) ?? 0) < init.maxPerGroup)
  const take = (owner: SlotOwner): () => void => {
    active++
    add(byPrincipal, owner.principal, 1)
    for (const g of owner.groups) add(byGroup, g, 1)
    let released = false
    return () => {
      if (released) return
      released = true
      active--
      add(byPrincipal, owner.principal, -1)
      for (const g of owner.groups) add(byGroup, g, -1)
      pump()
    }
  }
  // in line order, everyone who may run now; a waiter over its share does not hold up the others
  const pump = (): void => {
    for (let i = 0; i < waiters.length && active < init.maxSlots;) {
      if (!mayRun(waiters[i].owner)) { i++; continue }
      const [w] = waiters.splice(i, 1)
      w.wake()
    }
  }

  return {
    active: () => active,
    waiting: () => waiters.length,
    async acquire (owner, signal) {
      signal?.throwIfAborted()
      return await new Promise<() => void>((resolve, reject) => {
        const waiter: Waiter = {
          owner,
          wake: () => {
            signal?.removeEventListener('abort', onAbort)
            resolve(take(owner))
          }
        }
        const onAbort = (): void => {
          const i = waiters.indexOf(waiter)
          if (i >= 0) waiters.splice(i, 1)
          reject(signal?.reason)
        }
        signal?.addEventListener('abort', onAbort, { once: true })
        waiters.push(waiter)
        pump()
      })
    }
  }
}
