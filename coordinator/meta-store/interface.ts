/**
 * The metadata store: the small part of abstract-level's API the
 * coordinator's stores actually use (sublevels, get, getMany, put, del,
 * atomic batches across sublevels, ordered range iteration, range clear),
 * plus a named lock. Two implementations: `level` (one process, DATA/meta,
 * the embedded default: the Level instance itself, so nothing changes on
 * disk) and PostgreSQL (several coordinators, pg-meta-db.ts). Keys are
 * strings ordered by their UTF-8 bytes in both; values are encoded per
 * space (json, utf8, or raw bytes).
 */

/** How a space's values are stored. */
export type MetaValueEncoding = 'json' | 'utf8' | 'view'

/** A key range, as abstract-level takes it: bounds on keys (UTF-8 byte order), direction and count. */
export interface MetaRange {
  gt?: string
  gte?: string
  lt?: string
  lte?: string
  reverse?: boolean
  limit?: number
}

/** An iteration in progress: `for await` it, and `close()` it when leaving early outside a `for await`. */
export interface MetaIterator<T> extends AsyncIterable<T> {
  close: () => Promise<void>
}

/** One write of a space's own batch. */
export type MetaSpaceOp<V> = { type: 'put', key: string, value: V } | { type: 'del', key: string }

/**
 * One write of a root batch: `sublevel` is the space it goes to, a MetaSpace
 * from this db's `sublevel()` (typed loosely because level's own batch takes its
 * sublevel class there, and the level store is that class itself).
 */
export type MetaBatchOp = { type: 'put', sublevel: any, key: string, value: any } | { type: 'del', sublevel: any, key: string }

/** A key space (a level sublevel; rows of one `space` in PostgreSQL). */
export interface MetaSpace<V> {
  /** The value, or undefined when the key is absent. */
  get: (key: string) => Promise<V | undefined>
  getMany: (keys: string[]) => Promise<Array<V | undefined>>
  put: (key: string, value: V) => Promise<void>
  del: (key: string) => Promise<void>
  /** Applies every op or none; a later op on the same key wins. */
  batch: (ops: Array<MetaSpaceOp<V>>) => Promise<void>
  iterator: (range?: MetaRange) => MetaIterator<[string, V]>
  keys: (range?: MetaRange) => MetaIterator<string>
  values: (range?: MetaRange) => MetaIterator<V>
  /** Deletes every key in the range (all keys without one). */
  clear: (range?: MetaRange) => Promise<void>
}

/** Which implementation a MetaDb is, for what differs between one process and several. */
export interface MetaDbKind {
  /**
   * True when other coordinator processes write the same store (PostgreSQL):
   * in-memory mirrors of shared state must then be refreshed (meta-store/shared-refresh.ts)
   * and caches read through inside `lock`.
   */
  readonly shared: boolean
}

/** The root of the metadata store. */
export interface MetaDb extends MetaDbKind {
  sublevel: <K extends string = string, V = any>(name: string, options?: { valueEncoding?: MetaValueEncoding, keyEncoding?: 'utf8' }) => MetaSpace<V>
  /** Applies every op (of any spaces) or none; a later op on the same key wins. */
  batch: (ops: MetaBatchOp[]) => Promise<void>
  /**
   * Runs `fn` while holding the lock `name` against every other holder of it:
   * in this process (level) or in any coordinator on the same database (PostgreSQL,
   * a session advisory lock, released when `fn` settles or the connection dies; the
   * writes `fn` makes go through that session, so they fail with LockLostError
   * once it died instead of racing the lock's next holder).
   * For read-modify-write of shared records; `fn` must not take a lock itself
   * (PostgreSQL bounds how many locks are held at once, so nested locks could wait on each other).
   */
  lock: <T>(name: string, fn: () => Promise<T>) => Promise<T>
  /**
   * A value that changes whenever any of these spaces is written (in any coordinator);
   * absent on level (one process: nothing to notice). Read it before reloading what it covers.
   */
  generations?: (spaces: string[]) => Promise<string>
  close: () => Promise<void>
}
