/**
 * Where the coordinator keeps its versions: one narrow interface over the
 * storage, so the image service (and fsck) never touch the database directly
 * and another backend (a shared metadata store, precomputed segments kept at
 * publish) plugs in here alone.
 *
 * Level layout (sublevels of the root db, all prefixed IMAGE_SUBLEVEL_PREFIX):
 *   img-versions  `${image}/${version}` -> VersionRecord (json)
 *   img-envelopes `${image}/${version}` -> signed envelope bytes
 *   img-digests   `${image}/${version}` -> full BLAKE3 digest of every non-zero block, 32 bytes each
 *   img-packs     `${image}/${version}/${from}` -> PackRecord (json)
 *   img-meta      `seq` -> last publish sequence number
 */
import type { api } from '../protocol/index.ts'
import { NotFoundError } from '../protocol/errors.ts'
import { decodeManifest, type Manifest } from '../protocol/manifest.ts'
import { decodeEnvelope } from '../protocol/signed-manifest.ts'
import { IMAGE_SUBLEVEL_PREFIX } from './constants.ts'
import type { MetaDb } from './meta-db.ts'

/** What is stored per version: the public info plus the publish order. */
export interface VersionRecord {
  info: api.VersionInfo
  seq: number
  /** Set by `coordinator fsck` when chunks of the version are damaged or missing: never served nor `latest`. */
  incomplete?: boolean
  /** Set by storage gc on a retired version before it deletes its chunks: never served again. */
  collected?: boolean
}

/** A built delta pack, as recorded once its pieces are stored. */
export interface PackRecord {
  bytes: number
  blocks: number
  etag: string
  builtAt: string
  /**
   * The pack's pieces in the block store, in order (delta-pack-builder.ts). Absent in a record written
   * before packs moved to the block store: its pack is a file under DATA/packs, imported at start (delta-packs.ts).
   */
  pieces?: Array<{ cid: string, bytes: number }>
}

/** Names one delta pack: of `version`, from `from`. */
export interface PackRef {
  image: string
  version: string
  from: string
}

/** Everything a commit stores, written together or not at all. */
export interface NewVersion {
  record: VersionRecord
  /** The signed envelope, as served. */
  envelope: Uint8Array
  /** Full digest of every non-zero block (DIGEST_BYTES each), for delta packs and reuse figures. */
  digests: Uint8Array
}

/** The version storage. Reads return fresh objects the caller may keep. */
export interface VersionStore {
  /** The version records of one image, in no particular order. */
  imageRecords: (image: string) => Promise<VersionRecord[]>
  /** Every version record of every image. */
  allRecords: () => AsyncIterable<VersionRecord>
  /** A version's signed envelope; undefined when none is stored. */
  envelope: (image: string, version: string) => Promise<Uint8Array | undefined>
  /** A version's block digests; undefined when none are stored. */
  digests: (image: string, version: string) => Promise<Uint8Array | undefined>
  /** The publish sequence number the next commit takes. */
  nextSeq: () => Promise<number>
  /** Stores a new version whole (record, envelope, digests, sequence number) in one write. */
  commit: (version: NewVersion) => Promise<void>
  /** Replaces a version's record. */
  putRecord: (record: VersionRecord) => Promise<void>
  /** A delta pack's record; undefined when not built. */
  pack: (ref: PackRef) => Promise<PackRecord | undefined>
  /** Records a built delta pack and the version record that now names its size, in one write. */
  putPack: (record: VersionRecord, ref: PackRef, pack: PackRecord) => Promise<void>
  /** Every delta pack record. */
  allPacks: () => AsyncIterable<PackRef & { pack: PackRecord }>
  /** Deletes delta pack records (not their files). */
  deletePacks: (refs: readonly PackRef[]) => Promise<void>
}

/** The key of a version in every sublevel. */
export function versionKey (image: string, version: string): string {
  return `${image}/${version}`
}

function packKey (ref: PackRef): string {
  return `${versionKey(ref.image, ref.version)}/${ref.from}`
}

/** The version storage in the coordinator's level database (layout in the module comment). */
export function createVersionStore (components: { db: MetaDb }): VersionStore {
  const { db } = components
  const versions = db.sublevel<string, VersionRecord>(`${IMAGE_SUBLEVEL_PREFIX}-versions`, { valueEncoding: 'json' })
  const envelopes = db.sublevel<string, Uint8Array>(`${IMAGE_SUBLEVEL_PREFIX}-envelopes`, { valueEncoding: 'view' })
  const digests = db.sublevel<string, Uint8Array>(`${IMAGE_SUBLEVEL_PREFIX}-digests`, { valueEncoding: 'view' })
  const packs = db.sublevel<string, PackRecord>(`${IMAGE_SUBLEVEL_PREFIX}-packs`, { valueEncoding: 'json' })
  const meta = db.sublevel<string, number>(`${IMAGE_SUBLEVEL_PREFIX}-meta`, { valueEncoding: 'json' })
  const keyOf = (rec: VersionRecord): string => versionKey(rec.info.image, rec.info.version)

  return {
    async imageRecords (image) {
      const out: VersionRecord[] = []
      // '/' + 1 is '0': every key `${image}/...` and nothing of another image.
      for await (const value of versions.values({ gt: `${image}/`, lt: `${image}0` })) out.push(value)
      return out
    },
    allRecords: () => versions.values() as AsyncIterable<VersionRecord>,
    envelope: async (image, version) => await envelopes.get(versionKey(image, version)),
    digests: async (image, version) => await digests.get(versionKey(image, version)),
    nextSeq: async () => ((await meta.get('seq')) ?? 0) + 1,
    async commit ({ record, envelope, digests: blockDigests }) {
      const key = keyOf(record)
      await db.batch([
        { type: 'put', sublevel: versions, key, value: record },
        { type: 'put', sublevel: envelopes, key, value: envelope },
        { type: 'put', sublevel: digests, key, value: blockDigests },
        { type: 'put', sublevel: meta, key: 'seq', value: record.seq }
      ] as any)
    },
    async putRecord (record) {
      await versions.put(keyOf(record), record)
    },
    pack: async (ref) => await packs.get(packKey(ref)),
    async putPack (record, ref, pack) {
      await db.batch([
        { type: 'put', sublevel: versions, key: keyOf(record), value: record },
        { type: 'put', sublevel: packs, key: packKey(ref), value: pack }
      ] as any)
    },
    async * allPacks () {
      for await (const [key, pack] of packs.iterator() as AsyncIterable<[string, PackRecord]>) {
        const [image, version, from] = key.split('/')
        yield { image, version, from, pack }
      }
    },
    async deletePacks (refs) {
      if (refs.length > 0) await db.batch(refs.map(ref => ({ type: 'del', sublevel: packs, key: packKey(ref) })) as any)
    }
  }
}

/** One stored version as `coordinator fsck` sees it. */
export interface StoredVersion {
  image: string
  version: string
  manifest: Manifest
  incomplete: boolean
}

/** A stored version's manifest, decoded from its envelope (built by us at commit: the signature is not checked again). */
export async function storedManifest (store: VersionStore, image: string, version: string): Promise<Manifest> {
  const envelope = await store.envelope(image, version)
  if (envelope == null) throw new NotFoundError(`version ${versionKey(image, version)} has no stored manifest`)
  return decodeManifest(decodeEnvelope(envelope).manifest)
}

/** Every stored version with its manifest, but those storage gc collected (their chunks are gone on purpose); for fsck, the coordinator must be stopped. */
export async function * storedVersions (db: MetaDb): AsyncGenerator<StoredVersion> {
  const store = createVersionStore({ db })
  for await (const rec of store.allRecords()) {
    if (rec.collected === true) continue
    const { image, version } = rec.info
    yield { image, version, manifest: await storedManifest(store, image, version), incomplete: rec.incomplete === true }
  }
}

/** Marks a version incomplete (never served nor `latest`) or complete again; for fsck, with the coordinator stopped. */
export async function setVersionIncomplete (db: MetaDb, image: string, version: string, incomplete: boolean): Promise<void> {
  const store = createVersionStore({ db })
  const rec = (await store.imageRecords(image)).find(r => r.info.version === version)
  if (rec == null) throw new NotFoundError(`image ${image} has no version ${version}`)
  if ((rec.incomplete === true) === incomplete) return
  if (incomplete) rec.incomplete = true
  else delete rec.incomplete
  await store.putRecord(rec)
}
