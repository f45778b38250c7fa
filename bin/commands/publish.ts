/** `trimswarm publish IMAGE`: chunk an image, upload what the coordinator lacks, commit a signed version. */
import { InvalidImageError } from '../../chunker/errors.ts'
import { ValidationError } from '../../protocol/errors.ts'
import { createPublishClient, type PublishProgress } from '../../client/publish-client.ts'
import { DEFAULT_PUBLISH_CONCURRENCY } from '../../client/constants.ts'
import { httpDetailsOf } from '../../client/errors.ts'
import { adminTarget } from '../admin-client.ts'
import { CliError, EXIT, onePositional, requireString, UsageError, type Command } from '../cli-support.ts'

const usage = `Usage: trimswarm publish IMAGE --image NAME --version V --coordinator URL --token-file FILE [--json]

Publishes a raw disk image as version V of image NAME. First checks what
would refuse the commit (names, admin rights, a version that exists already),
then scans the image once
(BLAKE3 per 4 KiB block, content-defined chunks), asks the coordinator which
chunks it lacks, uploads only those (a few in parallel, re-read from IMAGE),
then commits the manifest; the coordinator checks every chunk and block
digest, signs the manifest and makes the version visible atomically. An
interrupted publish leaves no version (run it again: chunks already uploaded
are not sent twice). Publishing an image the coordinator already has uploads
nothing; a new version uploads only chunks no earlier version had.

Options
  --image NAME        image name (letters, digits, . _ + -)
  --version V         version name; versions are immutable ("latest" is reserved)
  --coordinator URL   e.g. http://127.0.0.1:8440 (or TRIMSWARM_COORDINATOR)
  --token-file FILE   file holding the admin token (DIR/admin.token on the coordinator;
                      or TRIMSWARM_TOKEN_FILE)
  --concurrency N     chunk uploads in flight (default ${DEFAULT_PUBLISH_CONCURRENCY})
  --json              print a JSON summary: {"image", "version", "manifestCid",
                      "chunks", "chunksUploaded", "bytesUploaded", "nonZeroBytes",
                      "seconds", "info": the version as the coordinator stored it}
  -h, --help          this text

Exit codes: 0 published, ${EXIT.usage} bad usage, ${EXIT.auth} token refused or not an admin,
${EXIT.unreachable} coordinator unreachable, ${EXIT.localIo} image unreadable, ${EXIT.failure} other failures (a bad
image, the version exists); all codes: trimswarm --help.`

function mib (n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}

const command: Command = {
  summary: 'publish an image version to a coordinator',
  usage,
  options: {
    image: { type: 'string' },
    version: { type: 'string' },
    coordinator: { type: 'string' },
    'token-file': { type: 'string' },
    concurrency: { type: 'string' },
    json: { type: 'boolean' }
  },
  async run (args) {
    const path = onePositional(args, 'IMAGE', usage)
    const image = requireString(args, 'image', usage)
    const version = requireString(args, 'version', usage)
    let concurrency: number | undefined
    if (args.values.concurrency !== undefined) {
      const v = String(args.values.concurrency)
      if (!/^[1-9][0-9]{0,2}$/.test(v)) throw new UsageError(`--concurrency must be a whole number from 1 to 999, got ${JSON.stringify(v)}\n\n${usage}`)
      concurrency = Number(v)
    }
    const json = args.values.json === true
    const { coordinator, token } = await adminTarget(args, usage)
    const say = (line: string): void => { if (!json) process.stderr.write(line + '\n') }
    let toUpload = 0
    let shownTenth = 0
    const onProgress = (p: PublishProgress): void => {
      if (p.phase === 'scanned') say(`scanned ${path}: ${p.chunks} chunks, ${mib(p.bytes)} of non-zero data`)
      else if (p.phase === 'missing') { toUpload = p.missing; say(`the coordinator lacks ${p.missing} chunks`) }
      else if (p.phase === 'uploaded' && toUpload > 0) {
        // a line per tenth: enough to see it move, few enough for a log file
        const tenth = Math.floor(p.chunks * 10 / toUpload)
        if (tenth > shownTenth) { shownTenth = tenth; say(`uploaded ${p.chunks}/${toUpload} chunks (${mib(p.bytes)})`) }
      }
    }
    const ac = new AbortController()
    const onSignal = (): void => { ac.abort(new Error('interrupted')) }
    process.once('SIGINT', onSignal)
    try {
      const client = createPublishClient({ coordinator, token, concurrency })
      const s = await client.publish(path, { image, version, onProgress, signal: ac.signal })
      if (json) {
        process.stdout.write(JSON.stringify(s) + '\n')
      } else {
        console.log([
          `published  ${s.image} version ${s.version} (previous: ${s.info.previous ?? 'none'})`,
          `manifest   ${s.manifestCid}`,
          `chunks     ${s.chunks} total, ${s.chunksUploaded} uploaded (${mib(s.bytesUploaded)} of ${mib(s.nonZeroBytes)} non-zero data)`,
          s.info.reusedFromPreviousPercent != null ? `reused     ${s.info.reusedFromPreviousPercent} % of the blocks were in ${s.info.previous}` : undefined,
          `time       ${s.seconds.toFixed(1)} s`
        ].filter(l => l != null).join('\n'))
      }
      return 0
    } catch (err) {
      // which request the coordinator refused, and how: publish makes several
      const http = httpDetailsOf(err)
      if (http != null) (err as Error).message = `${http.method} ${http.path}: ${(err as Error).message} (HTTP ${http.status})`
      if (err instanceof InvalidImageError || err instanceof ValidationError) throw new CliError(err.message, { cause: err })
      throw err
    } finally {
      process.off('SIGINT', onSignal)
    }
  }
}

export default command
