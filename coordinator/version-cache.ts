/**
 * Read-through caches over the version storage, all on the one LRU
 * (lru-cache.ts).
 *
 * Each manifest request used to open a level iterator over the image's
 * versions (to resolve `latest`) and copy the envelope out of level: under a
 * crowd of agents that was most of the request's cost, plus a copy of up to
 * MAX_MANIFEST_BYTES per request. Every write to the version records goes
 * through the image service (fsck writes only while the coordinator is
 * stopped) and envelopes never change once committed (a retired version stays
 * fetchable by name), so both are cached: an image's version records, frozen,
 * in publish order (dropped by every write to that image), and the envelope
 * bytes (one shared buffer, sent as is to every client). Decoded manifests are
 * kept for the origin routes, which look up chunks and blocks in them.
 */
import type { api } from '../protocol/index.ts'
import { chunkCid } from '../protocol/block-id.ts'
import { NotFoundError } from '../protocol/errors.ts'
import { decodeManifest, type Manifest } from '../protocol/manifest.ts'
import { decodeEnvelope } from '../protocol/signed-manifest.ts'
import { ENVELOPE_CACHE_BYTES, ENVELOPE_CACHE_ENTRIES, MANIFEST_CACHE_SIZE, VERSION_RECORD_CACHE_IMAGES } from './constants.ts'
import { createLruCache, type LruCache } from './lru-cache.ts'
import { versionKey, type VersionRecord, type VersionStore } from './version-store.ts'

/**
 * A cache that loads a missing value once however many ask for it at once.
 * A load that started before `invalidate` is handed to its callers but not kept.
 */
export interface ReadThrough<V> {
  get: (key: string, load: () => Promise<V>) => Promise<V>
  /** Drops `key`, and keeps any load of it in progress from being cached. */
  invalidate: (key: string) => void
  /** Drops every key, and keeps every load in progress from being cached. */
  clear: () => void
}

/** A read-through cache over `cache` (see ReadThrough). */
export function createReadThrough<V> (cache: LruCache<V>): ReadThrough<V> {
  const loads = new Map<string, Promise<V>>()
  // Bumped by every invalidation: a load that started before one must not cache what it read.
  let generation = 0
  return {
    async get (key, load) {
      const hit = cache.get(key)
      if (hit !== undefined) return hit
      let pending = loads.get(key)
      if (pending == null) {
        const gen = generation
        const loading: Promise<V> = load()
          .then(value => {
            if (gen === generation) cache.set(key, value)
            return value
          })
          .finally(() => { if (loads.get(key) === loading) loads.delete(key) })
        loads.set(key, pending = loading)
      }
      return await pending
    },
    invalidate (key) {
      generation++
      cache.delete(key)
      loads.delete(key)
    },
    clear () {
      generation++
      cache.clear()
      loads.clear()
    }
  }
}

/** A decoded manifest with the set of its chunk CIDs (as strings). */
export interface CachedManifest {
  manifest: Manifest
  cids: Set<string>
}

/** The cached views of the version storage. */
export interface VersionCache {
  /** Every version record of an image, in publish order (frozen: copy one to change it). */
  records: (image: string) => Promise<readonly VersionRecord[]>
  /** One version's record (frozen). */
  record: (image: string, version: string) => Promise<VersionRecord | undefined>
  /** A version's signed envelope (shared: never modify it). NotFoundError when none is stored. */
  envelope: (image: string, version: string) => Promise<Uint8Array>
  /** A version's manifest, decoded, with its chunk CIDs. */
  manifest: (info: api.VersionInfo) => Promise<CachedManifest>
  /** Drops the records of `image`; call after every write to its version records. */
  invalidate: (image: string) => void
  /** Drops every image's records: with a shared store other coordinators publish and retire. */
  refresh: () => void
  /** Drops a version's decoded manifest (storage gc collected it). */
  forgetManifest: (image: string, version: string) => void
}

/** Caches over `store` (bounds in coordinator/constants.ts). */
export function createVersionCache (components: { store: VersionStore }): VersionCache {
  const { store } = components
  const records = createReadThrough(createLruCache<readonly VersionRecord[]>({ maxEntries: VERSION_RECORD_CACHE_IMAGES }))
  const envelopeLru = createLruCache<Uint8Array>({ maxEntries: ENVELOPE_CACHE_ENTRIES, maxWeight: ENVELOPE_CACHE_BYTES, weigh: b => b.byteLength })
  const envelopes = createReadThrough(envelopeLru)
  const manifests = createReadThrough(createLruCache<CachedManifest>({ maxEntries: MANIFEST_CACHE_SIZE }))

  const readRecords = async (image: string): Promise<readonly VersionRecord[]> => {
    const out = await store.imageRecords(image)
    for (const rec of out) Object.freeze(rec.info)
    return Object.freeze(out.sort((a, b) => a.seq - b.seq).map(rec => Object.freeze(rec)))
  }
  const readEnvelope = async (image: string, version: string): Promise<Uint8Array> => {
    const bytes = await store.envelope(image, version)
    if (bytes == null) throw new NotFoundError(`image ${image} version ${version} has no manifest`)
    return bytes
  }

  const cache: VersionCache = {
    records: async (image) => await records.get(image, async () => await readRecords(image)),
    record: async (image, version) => (await cache.records(image)).find(r => r.info.version === version),
    envelope: async (image, version) => await envelopes.get(versionKey(image, version), async () => await readEnvelope(image, version)),
    async manifest (info) {
      return await manifests.get(versionKey(info.image, info.version), async () => {
        // The envelope was built by us at commit; decode the manifest inside without re-verifying the signature.
        const manifest = decodeManifest(decodeEnvelope(await cache.envelope(info.image, info.version)).manifest)
        return { manifest, cids: new Set(manifest.chunks.map(c => chunkCid(c.digest).toString())) }
      })
    },
    invalidate: (image) => { records.invalidate(image) },
    refresh: () => { records.clear() },
    forgetManifest: (image, version) => { manifests.invalidate(versionKey(image, version)) }
  }
  return cache
}
