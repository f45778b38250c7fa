/**
 * A segment downloaded whole and spooled to the data dir as it arrives
 * (peer-agent/segment-download.ts): a download that broke off (or an agent
 * killed mid-segment) resumes with Range and If-Range, a spool that is not the
 * segment's start is thrown away, the table's size bounds the body, and the
 * spool name is never followed through a symlink. A small HTTP server plays
 * the coordinator's segment route (ETag = the segment's CID, ranges as
 * coordinator/http-range.ts answers them) and records what it was asked.
 */
import { createServer, type Server } from 'node:http'
import { mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { chunkCidOf } from '../../chunker/blake3.ts'
import { createCoordinatorClient, type CoordinatorClient } from '../../peer-agent/coordinator-client.ts'
import { silentLogger } from '../../peer-agent/interface.ts'
import { SegmentMismatchError } from '../../peer-agent/errors.ts'
import { downloadSegment, spoolPathOf, type SegmentDownload } from '../../peer-agent/segment-download.ts'
import { seededBytes, tempDir, type TempDir } from '../helpers/images.ts'

const frame = seededBytes(9, 300_000)
const cid = chunkCidOf(frame).toString()

interface Asked { range?: string, ifRange?: string, status: number, sent: number, closed?: boolean }
let asked: Asked[] = []
/** The next ranged answer is a 206 for a range not asked for (from byte 0, a broken cache), its body left open. */
let wrongRange = false
/** Bytes after which the next answer breaks its connection off (once); undefined: whole answers. */
let breakAfter: number | undefined

let server: Server
let client: CoordinatorClient
let tmp: TempDir
let dir: string

beforeAll(async () => {
  tmp = await tempDir('trimswarm-segment-download-')
  server = createServer((req, res) => {
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
    const partial = range != null && req.headers['if-range'] === `"${cid}"` && Number(range[1]) < frame.length
    const start = partial ? Number(range[1]) : 0
    const body = frame.subarray(start)
    const a: Asked = { range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined, status: partial ? 206 : 200, sent: 0 }
    asked.push(a)
    if (wrongRange && partial) {
      wrongRange = false
      res.on('close', () => { a.closed = true })
      res.writeHead(206, { 'content-type': 'application/zstd', etag: `"${cid}"`, 'content-range': `bytes 0-${frame.length - 1}/${frame.length}` })
      res.write(frame.subarray(0, 1000))
      return
    }
    res.writeHead(a.status, {
      'content-type': 'application/zstd', etag: `"${cid}"`, 'content-length': body.length,
      ...(partial ? { 'content-range': `bytes ${start}-${frame.length - 1}/${frame.length}` } : {})
    })
    if (breakAfter != null) {
      const cut = breakAfter
      breakAfter = undefined
      a.sent = cut
      res.write(body.subarray(0, cut), () => setTimeout(() => res.socket?.destroy(), 50))
      return
    }
    a.sent = body.length
    res.end(body)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  client = createCoordinatorClient({ logger: silentLogger }, { url: `http://127.0.0.1:${port}`, auth: { token: 't' }, retry: { attempts: 1 } })
})

afterAll(async () => {
  await new Promise(resolve => server?.close(resolve))
  await tmp?.cleanup()
})

let n = 0
afterEach(() => { asked = []; breakAfter = undefined; wrongRange = false })

/** A fresh spool folder per test. */
async function spoolDir (): Promise<string> {
  dir = join(tmp.path, `spool-${++n}`)
  await mkdir(dir, { recursive: true })
  return dir
}

const seg = (bytes = frame.length): SegmentDownload => ({ route: '/seg', cid, bytes, label: 'segment 0 of ws@v1' })

describe('segment download', () => {
  it('downloads a segment whole in one request and spools it as it arrives', async () => {
    const spool = spoolPathOf(await spoolDir(), cid)
    const got = await downloadSegment({ client, logger: silentLogger }, seg(), spool, {})
    expect(Buffer.from(got).equals(Buffer.from(frame))).toBe(true)
    expect(asked).toEqual([{ range: undefined, ifRange: undefined, status: 200, sent: frame.length }])
    expect(Buffer.from(await readFile(spool)).equals(Buffer.from(frame))).toBe(true)
    expect((await stat(spool)).mode & 0o777).toBe(0o600)
  })

  it('a download that broke off keeps what arrived: the next try asks only for the rest (Range, If-Range: the CID)', async () => {
    const spool = spoolPathOf(await spoolDir(), cid)
    breakAfter = 120_000
    await expect(downloadSegment({ client, logger: silentLogger }, seg(), spool, {})).rejects.toThrow()
    const kept = (await stat(spool)).size
    expect(kept).toBeGreaterThan(0)
    expect(kept).toBeLessThanOrEqual(120_000)
    const got = await downloadSegment({ client, logger: silentLogger }, seg(), spool, {})
    expect(Buffer.from(got).equals(Buffer.from(frame))).toBe(true)
    expect(asked[1]).toEqual({ range: `bytes=${kept}-`, ifRange: `"${cid}"`, status: 206, sent: frame.length - kept })
  })

  it('a 206 for a range not asked for is refused, the spool emptied, and the answer\'s connection closed, not left open', async () => {
    const spool = spoolPathOf(await spoolDir(), cid)
    await writeFile(spool, frame.subarray(0, 100_000))
    wrongRange = true
    await expect(downloadSegment({ client, logger: silentLogger }, seg(), spool, {})).rejects.toThrow(/asked from byte 100000, answered bytes 0-/)
    expect((await stat(spool)).size).toBe(0)
    for (let waited = 0; asked[0].closed !== true && waited < 5_000; waited += 20) await new Promise(resolve => setTimeout(resolve, 20))
    expect(asked[0].closed).toBe(true)
  })

  it('a whole segment already spooled (a kill while its blocks were offered) is used without a request', async () => {
    const spool = spoolPathOf(await spoolDir(), cid)
    await writeFile(spool, frame)
    const got = await downloadSegment({ client, logger: silentLogger }, seg(), spool, {})
    expect(Buffer.from(got).equals(Buffer.from(frame))).toBe(true)
    expect(asked).toEqual([])
  })

  it('a spool that is not the segment\'s start (torn by a crash, or written by someone) fails the CID check, is emptied, and the next try downloads it whole', async () => {
    const spool = spoolPathOf(await spoolDir(), cid)
    await writeFile(spool, seededBytes(10, 100_000))
    await expect(downloadSegment({ client, logger: silentLogger }, seg(), spool, {})).rejects.toThrow(/does not match its CID/)
    expect((await stat(spool)).size).toBe(0)
    const got = await downloadSegment({ client, logger: silentLogger }, seg(), spool, {})
    expect(Buffer.from(got).equals(Buffer.from(frame))).toBe(true)
    expect(asked.map(a => a.range)).toEqual(['bytes=100000-', undefined])
  })

  it('a spool larger than the segment is emptied and the segment downloaded whole', async () => {
    const spool = spoolPathOf(await spoolDir(), cid)
    await writeFile(spool, seededBytes(11, frame.length + 1))
    const got = await downloadSegment({ client, logger: silentLogger }, seg(), spool, {})
    expect(Buffer.from(got).equals(Buffer.from(frame))).toBe(true)
    expect(asked.map(a => a.range)).toEqual([undefined])
  })

  it('a body longer than the table lists is refused before anything is decoded', async () => {
    const err = await downloadSegment({ client, logger: silentLogger }, seg(frame.length - 10), undefined, {}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SegmentMismatchError)
    expect((err as Error).message).toBe(`segment 0 of ws@v1 is longer than the ${frame.length - 10} bytes its table lists`)
  })

  it('a symlink at the spool name is not followed: its target is untouched and the segment comes in memory', async () => {
    const d = await spoolDir()
    const victim = join(d, 'victim')
    await writeFile(victim, 'not yours\n')
    await symlink(victim, spoolPathOf(d, cid))
    const got = await downloadSegment({ client, logger: silentLogger }, seg(), spoolPathOf(d, cid), {})
    expect(Buffer.from(got).equals(Buffer.from(frame))).toBe(true)
    expect(await readFile(victim, 'utf8')).toBe('not yours\n')
  })
})
