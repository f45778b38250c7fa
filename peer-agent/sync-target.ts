/**
 * Which manifest a sync installs, verified before anything is written: the
 * signed "latest" (never moving back unless a version is named,
 * version-guard.ts), the version's info, and its signed manifest from the data
 * dir, a LAN peer or the origin, opened with the pinned key.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { api } from '../protocol/index.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { importPublicKey, openSignedManifest } from '../protocol/signed-manifest.ts'
import { MAX_VERSION_POINTER_BYTES, openVersionPointer, type VersionPointer } from '../protocol/version-pointer.ts'
import { manifestCidOf } from '../chunker/blake3.ts'
import { DATA_FILES } from './constants.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import { mkdirPrivate } from './private-files.ts'
import { DowngradeRefusedError, KeyPinError } from './errors.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'
import { readJson, writeRecord, type Checkpoint, type ImageRecords, type InstalledState } from './sync-records.ts'
import { downgradeOf, newestSeen, type SeenPointer } from './version-guard.ts'

/**
 * Opens a signed envelope as the version the coordinator lists: signed by the
 * pinned key (openSignedManifest's errors), for that image and version, with
 * that manifest CID (else KeyPinError). Wherever the envelope came from (data
 * dir, peer, origin), this is what makes it trusted.
 */
export async function openListedManifest (
  envelope: Uint8Array,
  key: CryptoKey,
  listed: { image: string, version: string, manifestCid: string }
): Promise<{ manifest: Manifest, manifestCid: string }> {
  const { manifest, manifestBytes } = await openSignedManifest(envelope, key)
  if (manifest.name !== listed.image || manifest.version !== listed.version) {
    throw new KeyPinError(`got the manifest of ${manifest.name}@${manifest.version}, asked for ${listed.image}@${listed.version}`)
  }
  const manifestCid = manifestCidOf(manifestBytes).toString()
  if (manifestCid !== listed.manifestCid) {
    throw new KeyPinError(`the manifest of ${manifest.name}@${manifest.version} is ${manifestCid}, the coordinator lists ${listed.manifestCid}`)
  }
  return { manifest, manifestCid }
}

/**
 * The coordinator's key: the configured one, else the one pinned in the data dir, else
 * GET /v1/key on first contact, pinned from then on. A configured key that differs from
 * the pinned one is refused (KeyPinError).
 */
export function createKeyPin (
  components: { client: CoordinatorClient, logger: AgentLogger },
  init: { dataDir: string, configured?: string }
): (options?: AbortOptions) => Promise<CryptoKey> {
  const { client, logger } = components
  const pinPath = join(init.dataDir, DATA_FILES.key)
  let key: CryptoKey | undefined
  return async (options = {}) => {
    if (key != null) return key
    const pinned = await readJson<{ url: string, publicKey: string }>(pinPath)
    let raw: string
    if (init.configured != null) {
      raw = init.configured
      if (pinned != null && pinned.publicKey !== raw) {
        throw new KeyPinError(`the configured coordinator key differs from the one pinned in ${pinPath}; ` +
          'remove that file if the coordinator\'s key was changed on purpose')
      }
    } else if (pinned != null) {
      raw = pinned.publicKey
    } else {
      raw = (await client.json('GET', api.routes.key, api.KeyResponse, undefined, options)).publicKey
      logger.info(`pinned coordinator key ${raw} in ${pinPath}`)
    }
    key = await importPublicKey(Uint8Array.from(Buffer.from(raw, 'base64')))
    if (pinned == null) {
      await mkdirPrivate(init.dataDir)
      await writeRecord(pinPath, JSON.stringify({ url: client.url, publicKey: raw }) + '\n')
    }
    return key
  }
}

/** What the target resolution needs. */
export interface TargetComponents {
  client: CoordinatorClient
  logger: AgentLogger
  /** Where a manifest not held locally comes from (image-sync.ts ImageSyncComponents.manifestSource). */
  manifestSource?: (info: api.VersionInfo, fromOrigin: (options: AbortOptions) => Promise<Uint8Array>, options: AbortOptions) => Promise<Uint8Array>
}

/** One target resolution. */
export interface TargetRequest {
  image: string
  /** The version the user named; the signed latest otherwise. */
  version?: string
  key: CryptoKey
  records: ImageRecords
  /** The installed record when it is for this output. */
  installedHere?: InstalledState
  checkpoint?: Checkpoint
}

/** The version a sync installs. */
export interface SyncTarget {
  manifest: Manifest
  manifestCid: string
  envelope: Uint8Array
  /** The signed latest it came from (absent: a named version). */
  pointer?: VersionPointer
}

/**
 * The signed "latest" of the image, verified with the pinned key and, unless the
 * user named a version (`explicit`), checked not to move back; the newest seen is stored.
 */
async function followLatest (client: CoordinatorClient, req: TargetRequest, explicit: boolean, options: AbortOptions): Promise<VersionPointer> {
  const bytes = await client.bytes('GET', api.routes.latest(req.image), undefined, { ...options, maxBytes: MAX_VERSION_POINTER_BYTES })
  const pointer = await openVersionPointer(bytes, req.key, req.image)
  const seen = await readJson<SeenPointer>(req.records.latestSeen)
  const refusal = explicit ? undefined : downgradeOf(pointer, seen, req.installedHere)
  if (refusal != null) throw new DowngradeRefusedError(refusal)
  const next = newestSeen(pointer, seen)
  if (next !== seen) {
    await mkdir(req.records.imageDir, { recursive: true })
    await writeRecord(req.records.latestSeen, JSON.stringify(next) + '\n')
  }
  return pointer
}

/** The version to install: the signed latest's, or the named one (the latest is still learnt, best effort). */
async function chooseVersion (components: TargetComponents, req: TargetRequest, options: AbortOptions): Promise<{ version: string, pointer?: VersionPointer }> {
  if (req.version == null) {
    const pointer = await followLatest(components.client, req, false, options)
    return { version: pointer.version, pointer }
  }
  // a named version is installed as asked; the signed latest is still learnt, so a later
  // unnamed sync cannot be moved below what the coordinator announced by then
  await followLatest(components.client, req, true, options).catch((err: Error) => {
    if (options.signal?.aborted === true) throw err
    components.logger.info(`the coordinator's signed latest of ${req.image} is unavailable (${err.message}); installing ${req.version} as asked`)
  })
  return { version: req.version }
}

/**
 * Resolves and verifies the manifest to install. The version's info comes first (a few hundred
 * bytes): a manifest already held (an interrupted sync's, or the installed one) is not downloaded
 * again (restarts and daemon polls cost ~nothing), and with LAN sharing one a peer of the site
 * holds comes from that peer.
 */
export async function resolveTarget (components: TargetComponents, req: TargetRequest, options: AbortOptions): Promise<SyncTarget> {
  const { client } = components
  const { version, pointer } = await chooseVersion(components, req, options)
  const info = await client.json('GET', api.routes.versionInfo(req.image, version), api.VersionInfo, undefined, options)
  if (pointer != null && info.manifestCid !== pointer.manifestCid) {
    const listed = `the coordinator lists manifest ${info.manifestCid} for ${req.image}@${pointer.version}`
    throw new KeyPinError(`${listed}, its signed latest names ${pointer.manifestCid}`)
  }
  let envelope = await heldEnvelope(req, info.manifestCid)
  const fromOrigin = async (o: AbortOptions): Promise<Uint8Array> => await client.bytes('GET', api.routes.version(req.image, info.version), undefined, o)
  envelope ??= components.manifestSource != null ? await components.manifestSource(info, fromOrigin, options) : await fromOrigin(options)
  const { manifest, manifestCid } = await openListedManifest(envelope, req.key, { image: req.image, version: info.version, manifestCid: info.manifestCid })
  return { manifest, manifestCid, envelope, pointer }
}

/** A signed manifest with CID `cid` the data dir holds (the checkpoint's, then the installed one), if any. */
async function heldEnvelope (req: TargetRequest, cid: string): Promise<Uint8Array | undefined> {
  const known: Array<{ cid: string, path: string }> = []
  if (req.checkpoint != null) known.push({ cid: req.checkpoint.manifestCid, path: req.records.partialManifest })
  if (req.installedHere != null) known.push({ cid: req.installedHere.manifestCid, path: req.records.manifestOf(req.installedHere.version) })
  for (const held of known) {
    if (held.cid !== cid) continue
    const envelope = await readFile(held.path).catch(() => undefined)
    if (envelope != null) return envelope
  }
  return undefined
}

/** The manifest of the installed version (to self-seed from it), when its stored copy still opens with the key. */
export async function installedManifest (
  records: ImageRecords,
  installedHere: InstalledState | undefined,
  key: CryptoKey,
  logger: AgentLogger
): Promise<Manifest | undefined> {
  if (installedHere == null) return undefined
  try {
    return (await openSignedManifest(await readFile(records.manifestOf(installedHere.version)), key)).manifest
  } catch (err) {
    logger.warn(`stored manifest of ${installedHere.image}@${installedHere.version} unusable (${(err as Error).message}); not self-seeding`)
    return undefined
  }
}
