/**
 * Pure decisions over an image's version records (no storage): which version
 * `latest` is, whether a named version may be served, and the listings.
 */
import type { api } from '../protocol/index.ts'
import type { AdminImageList, AdminVersion } from '../protocol/api-admin.ts'
import { NotFoundError, UnavailableError } from '../protocol/errors.ts'
import type { VersionRecord } from './version-store.ts'

/** The version name that means "the current one". */
export const LATEST = 'latest'

/** The newest record (last in publish order) that is neither retired nor incomplete. */
export function latestOf (records: readonly VersionRecord[]): VersionRecord | undefined {
  for (let i = records.length - 1; i >= 0; i--) if (!records[i].info.retired && records[i].incomplete !== true) return records[i]
  return undefined
}

/** The record `version` (or `latest`) names among an image's records in publish order; throws when it may not be served. */
export function pickServable (image: string, version: string, records: readonly VersionRecord[]): VersionRecord {
  if (version === LATEST) {
    const latest = latestOf(records)
    if (latest == null) throw new NotFoundError(`image ${image} has no current version`)
    return latest
  }
  const rec = records.find(r => r.info.version === version)
  if (rec == null) throw new NotFoundError(`image ${image} has no version ${version}`)
  if (rec.collected === true) throw new NotFoundError(`image ${image} version ${version} was retired and its data deleted by storage gc`)
  // fsck found chunks of it damaged or missing: serving it would only make agents fail later.
  if (rec.incomplete === true) {
    throw new UnavailableError(`image ${image} version ${version} is incomplete on this coordinator (damaged or missing chunks; see coordinator fsck)`)
  }
  return rec
}

/** Records grouped by image, images by name and each image's records in publish order. */
export function groupByImage (records: Iterable<VersionRecord>): Array<[string, VersionRecord[]]> {
  const byImage = new Map<string, VersionRecord[]>()
  for (const rec of records) {
    let list = byImage.get(rec.info.image)
    if (list == null) byImage.set(rec.info.image, list = [])
    list.push(rec)
  }
  const images = [...byImage.entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
  for (const [, recs] of images) recs.sort((a, b) => a.seq - b.seq)
  return images
}

/** The public image list (GET /v1/images) of grouped records. */
export function imageList (grouped: Array<[string, VersionRecord[]]>): api.ImageList {
  return { images: grouped.map(([name, recs]) => ({ name, latest: latestOf(recs)?.info.version ?? null, versions: recs.length })) }
}

/** The admin's image list (GET /v1/admin/images) of grouped records: every version with its state. */
export function adminImageList (grouped: Array<[string, VersionRecord[]]>): AdminImageList {
  return {
    images: grouped.map(([name, recs]) => {
      const latest = latestOf(recs)?.info.version ?? null
      return { name, latest, versions: recs.map(r => adminVersion(r, latest)) }
    })
  }
}

/** A version record as the admin list shows it. */
export function adminVersion (rec: VersionRecord, latest: string | null): AdminVersion {
  const { info } = rec
  const state = rec.collected === true ? 'collected' : info.retired ? 'retired' : rec.incomplete === true ? 'incomplete' : 'live'
  return {
    version: info.version,
    state,
    latest: info.version === latest,
    publishedAt: info.publishedAt,
    size: info.size,
    nonZeroBytes: info.nonZeroBytes,
    chunks: info.chunks,
    previous: info.previous,
    deltaPackBytes: info.deltaPackBytes
  }
}
