/** `trimswarm image list|retire|gc`: images, versions and storage, through the coordinator's admin API. */
import { api } from '../../protocol/index.ts'
import { AdminImageList, GcReport } from '../../protocol/api-admin.ts'
import { formatBytes, formatTime } from '../../coordinator/console/format.ts'
import { plural } from '../../peer-agent/progress-reporter.ts'
import { DEFAULT_GC_GRACE_SECONDS, DEFAULT_GC_INTERVAL_SECONDS } from '../../coordinator/constants.ts'
import { adminClientFrom, CLIENT_OPTIONS, CLIENT_USAGE } from '../admin-client.ts'
import { formatTable, UsageError, type Command } from '../cli-support.ts'

/** A gc of a large store takes a while: wait this long for its report (the run goes on server-side regardless). */
const GC_TIMEOUT_MS = 3600_000

const listUsage = `Usage: trimswarm image list [--json] --coordinator URL --token-file FILE

Lists every image and version: state (live, retired, collected = retired and
its data deleted by \`image gc\`, incomplete = damaged per coordinator fsck),
which is latest, size, non-zero data, chunks, delta pack and publish time.

  --json                 print JSON
${CLIENT_USAGE}`

const retireUsage = `Usage: trimswarm image retire NAME VERSION --coordinator URL --token-file FILE

Retires a version: it stops being \`latest\` and anyone's previous version.
Its chunks that no live version shares are deleted by the next \`image gc\`
(after which the version is no longer served).

${CLIENT_USAGE}`

const gcUsage = `Usage: trimswarm image gc [--dry-run] [--json] --coordinator URL --token-file FILE

Deletes the chunks and delta packs no live version uses and prints what it
freed. Safe to interrupt and to run again. Kept: chunks of live versions, and
unused chunks stored less than the grace period ago (a publish in progress;
default ${DEFAULT_GC_GRACE_SECONDS / 3600} h, config storageGc.graceSeconds). The coordinator also runs it
every ${DEFAULT_GC_INTERVAL_SECONDS / 3600} h by default (storageGc.intervalSeconds, 0 = off).

  --dry-run              count what would be deleted, delete nothing
  --json                 print the JSON report
${CLIENT_USAGE}`

const list: Command = {
  summary: 'list images and versions with their state',
  usage: listUsage,
  options: { ...CLIENT_OPTIONS, json: { type: 'boolean' } },
  async run (args) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${args.positionals[0]}\n\n${listUsage}`)
    const client = await adminClientFrom(args, listUsage)
    const { images } = await client.request('GET', api.routes.adminImages, { schema: AdminImageList })
    if (args.values.json === true) {
      process.stdout.write(JSON.stringify(images, null, 2) + '\n')
      return
    }
    if (images.length === 0) {
      process.stdout.write('no images\n')
      return
    }
    const rows = [['IMAGE', 'VERSION', 'STATE', 'SIZE', 'DATA', 'CHUNKS', 'DELTA PACK', 'PUBLISHED']]
    for (const img of images) {
      for (const v of img.versions) {
        const state = v.latest ? `${v.state}, latest` : v.state
        const deltaPack = v.deltaPackBytes == null ? '-' : formatBytes(v.deltaPackBytes)
        rows.push([img.name, v.version, state, formatBytes(v.size), formatBytes(v.nonZeroBytes), String(v.chunks), deltaPack, formatTime(v.publishedAt)])
      }
    }
    process.stdout.write(formatTable(rows))
  }
}

const retire: Command = {
  summary: 'retire a version',
  usage: retireUsage,
  options: { ...CLIENT_OPTIONS },
  async run (args) {
    if (args.positionals.length !== 2) throw new UsageError(`expected NAME VERSION, got ${args.positionals.length} argument(s)\n\n${retireUsage}`)
    const [image, version] = args.positionals
    try {
      api.name.parse(image, 'NAME')
      api.name.parse(version, 'VERSION')
    } catch (err) {
      throw new UsageError(`${(err as Error).message}\n\n${retireUsage}`)
    }
    const client = await adminClientFrom(args, retireUsage)
    const info = await client.request('POST', api.routes.retire(image, version), { schema: api.VersionInfo })
    process.stdout.write(`retired ${info.image} version ${info.version}; \`trimswarm image gc\` frees its unshared chunks\n`)
  }
}

const gc: Command = {
  summary: 'delete chunks and delta packs no live version uses',
  usage: gcUsage,
  options: { ...CLIENT_OPTIONS, 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } },
  async run (args) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${args.positionals[0]}\n\n${gcUsage}`)
    const dryRun = args.values['dry-run'] === true
    const client = await adminClientFrom(args, gcUsage)
    const r = await client.request('POST', api.routes.gc, { body: { dryRun }, schema: GcReport, timeoutMs: GC_TIMEOUT_MS })
    if (args.values.json === true) {
      process.stdout.write(JSON.stringify(r, null, 2) + '\n')
      return
    }
    const chunks = `${plural(r.chunks.deleted, 'chunk')} (${formatBytes(r.chunks.deletedBytes)})`
    const packs = `${plural(r.packs.deleted, 'delta pack')} (${formatBytes(r.packs.deletedBytes)})`
    const freed = `${formatBytes(r.chunks.deletedBytes + r.packs.deletedBytes)}: ${chunks} and ${packs}`
    const collected = plural(r.versionsCollected, 'retired version')
    process.stdout.write(r.dryRun
      ? `would free ${freed}; would collect ${collected}; `
      : `freed ${freed}; collected ${collected}; `)
    process.stdout.write(`kept ${plural(r.chunks.live, 'live chunk')} and ${plural(r.chunks.kept, 'unused chunk')} ` +
      `of a publish in progress or stored within the grace period; took ${r.seconds} s\n`)
  }
}

const command: Command = {
  summary: 'images and versions: list, retire, storage gc',
  usage: `Usage: trimswarm image <list|retire|gc> [options]   (each takes --help)

  list                   every image and version with its state and sizes
  retire NAME VERSION    retire a version (no longer latest)
  gc [--dry-run]         delete chunks and delta packs no live version uses`,
  subcommands: {
    list: async () => list,
    retire: async () => retire,
    gc: async () => gc
  }
}

export default command
