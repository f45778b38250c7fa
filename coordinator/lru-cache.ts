/**
 * A small least-recently-used cache bounded by entry count and by total
 * weight (e.g. bytes), for values that are read far more often than written:
 * the image service's version records and signed envelopes.
 */

/** Options of createLruCache. */
export interface LruCacheInit<V> {
  /** Most entries kept. */
  maxEntries: number
  /** Most total weight kept (default: no bound); a single value heavier than this is not kept at all. */
  maxWeight?: number
  /** Weight of one value (default 1). */
  weigh?: (value: V) => number
}

/** A bounded LRU map. */
export interface LruCache<V> {
  /** The value, marked most recently used; undefined when absent. */
  get: (key: string) => V | undefined
  /** Stores (or replaces) a value, then evicts the least recently used until within bounds. */
  set: (key: string, value: V) => void
  delete: (key: string) => void
  clear: () => void
  readonly size: number
  /** Total weight of the values kept. */
  readonly weight: number
}

/** Creates an empty LRU cache (a Map keeps insertion order: the first key is the least recently used). */
export function createLruCache<V> (init: LruCacheInit<V>): LruCache<V> {
  const map = new Map<string, { value: V, weight: number }>()
  const maxWeight = init.maxWeight ?? Infinity
  const weigh = init.weigh ?? (() => 1)
  let total = 0

  const remove = (key: string): void => {
    const e = map.get(key)
    if (e == null) return
    map.delete(key)
    total -= e.weight
  }

  return {
    get (key) {
      const e = map.get(key)
      if (e == null) return undefined
      map.delete(key)
      map.set(key, e)
      return e.value
    },
    set (key, value) {
      remove(key)
      const weight = weigh(value)
      if (weight > maxWeight || init.maxEntries < 1) return
      map.set(key, { value, weight })
      total += weight
      while (map.size > init.maxEntries || total > maxWeight) remove(map.keys().next().value as string)
    },
    delete: remove,
    clear () {
      map.clear()
      total = 0
    },
    get size () { return map.size },
    get weight () { return total }
  }
}
