/**
 * A real coordinator for agent tests: started in-process on 127.0.0.1 (its own
 * data dir), with images published through the real publish client, a machine
 * token for a group, and that group's policy. Agents run as real processes
 * (`node bin/trimswarm.js agent sync ...`) against its URL.
 */
import type { ChildProcess } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { constants as zlibConstants, zstdCompressSync, zstdDecompressSync } from 'node:zlib'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { DATA_FILES } from '../../peer-agent/constants.ts'
import { createPublishClient } from '../../client/publish-client.ts'
import type { Policy } from '../../protocol/api.ts'
import { CLI, spawnNode, type CliResult } from '../helpers/cli-process.ts'
import { b3sumFile, makeTestImage, tempDir, type MakeTestImageOptions, type TempDir, type TestImage } from '../helpers/images.ts'

/** Path of the CLI entry point. */
export { CLI }

/** A running coordinator with one agent group. */
export interface TestCoordinator {
  coordinator: Coordinator
  url: string
  /** File holding a machine token of group `branch`. */
  tokenFile: string
  publish: (image: string, version: string, path: string) => Promise<void>
  setPolicy: (policy: Partial<Policy>) => Promise<void>
  stop: () => Promise<void>
}

/** The default policy of the test group: every image, no caps. */
export const OPEN_POLICY: Policy = {
  images: ['*'],
  wanLimitBps: 0,
  lanSharing: true,
  lanUploadBps: 0,
  maxPeers: 8,
  updateWindow: null,
  indexFolders: {}
}

/** Starts a coordinator under `dir` and prepares a token and policy for group `branch`. */
export async function startTestCoordinator (dir: string, options: { listen?: string, config?: Record<string, unknown> } = {}): Promise<TestCoordinator> {
  // segments at a fast zstd level: the tests check what is sent and verified, not the ratio (level 19 costs seconds per publish)
  const config = { ...options.config, segments: { zstdLevel: 3, ...(options.config?.segments as Record<string, unknown> | undefined) } }
  const coordinator = createCoordinator({ dataDir: join(dir, 'coordinator'), listen: options.listen ?? '127.0.0.1:0', logLevel: 'error', config })
  await coordinator.start()
  const url = coordinator.url
  const admin = async (method: string, path: string, body?: unknown): Promise<any> => {
    const res = await fetch(url + path, { method, headers: { authorization: `Bearer ${coordinator.adminToken}`, 'content-type': 'application/json' }, body: body == null ? undefined : JSON.stringify(body) })
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
    return text === '' ? undefined : JSON.parse(text)
  }
  await admin('PUT', '/v1/policies/branch', OPEN_POLICY)
  const token = await admin('POST', '/v1/tokens', { group: 'branch', name: 'test-agent' })
  const tokenFile = join(dir, 'agent.token')
  await writeFile(tokenFile, token.token + '\n', { mode: 0o600 })
  const publisher = createPublishClient({ coordinator: url, token: coordinator.adminToken })
  return {
    coordinator,
    url,
    tokenFile,
    async publish (image, version, path) {
      await publisher.publish(path, { image, version })
      await coordinator.images.whenIdle() // delta pack built
      await coordinator.segments.whenIdle() // segments built: agents take them, whatever the timing
    },
    async setPolicy (policy) {
      await admin('PUT', '/v1/policies/branch', { ...OPEN_POLICY, ...policy })
    },
    async stop () { await coordinator.stop() }
  }
}

/** A temp dir, a test image in it, its b3sum, and a coordinator (under the temp dir) serving it as ws@v1. */
export interface PublishedTestImage {
  tmp: TempDir
  img: TestImage
  imgSum: string
  coord: TestCoordinator
}

/** The set-up most agent tests start from (their beforeAll): makeTestImage(`image`) in a fresh temp dir, published as ws@v1. */
export async function startPublishedTestImage (prefix: string, image: MakeTestImageOptions, config?: Record<string, unknown>): Promise<PublishedTestImage> {
  const tmp = await tempDir(prefix)
  const img = await makeTestImage(tmp.path, image)
  const imgSum = await b3sumFile(img.path)
  const coord = await startTestCoordinator(tmp.path, { config })
  await coord.publish('ws', 'v1', img.path)
  return { tmp, img, imgSum, coord }
}

/** The result of one agent process. */
export interface AgentRun extends CliResult {
  /** The parsed --json summary, when the run printed one. */
  summary?: any
}

/** Starts `trimswarm agent ...` as a child process. */
export function spawnAgent (args: string[], env: Record<string, string> = {}): { child: ChildProcess, done: Promise<AgentRun> } {
  const { child, done } = spawnNode([CLI, 'agent', ...args], { env })
  return {
    child,
    done: done.then((r) => {
      let summary: any
      try { summary = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') } catch {}
      return { ...r, summary }
    })
  }
}

/** Runs `trimswarm agent ...` to completion. */
export async function runAgent (args: string[], env: Record<string, string> = {}): Promise<AgentRun> {
  return await spawnAgent(args, env).done
}

/** The libp2p peer id of an agent's data dir (its swarm key), as the rendezvous lists it. */
export async function peerIdOfDataDir (dataDir: string): Promise<string> {
  return peerIdFromPrivateKey(privateKeyFromProtobuf(new Uint8Array(await readFile(join(dataDir, DATA_FILES.swarmKey))))).toString()
}

/**
 * Lists the agent of `dataDir` at the rendezvous again, at a port nobody listens on, with the test token: what an agent
 * killed with -9 leaves behind until its registration's TTL lapses (one that exits takes itself off the list).
 */
export async function listAsKilled (coord: TestCoordinator, dataDir: string, where: { site: string, image: string, version: string }): Promise<string> {
  const peerId = await peerIdOfDataDir(dataDir)
  const token = (await readFile(coord.tokenFile, 'utf8')).trim()
  const res = await fetch(`${coord.url}/v1/peers`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ peerId, multiaddrs: ['/ip4/127.0.0.1/tcp/9'], ...where })
  })
  if (res.status !== 200) throw new Error(`POST /v1/peers: ${res.status} ${await res.text()}`)
  return peerId
}

/** An HTTP proxy to `target` that lets a test rewrite response bodies (a man in the middle) or answer an error status itself. */
export async function startTamperingProxy (
  target: string, tamper: (path: string, body: Uint8Array) => Uint8Array, status?: (path: string) => number | undefined
): Promise<{ url: string, close: () => Promise<void> }> {
  const { createServer } = await import('node:http')
  const server = createServer((req, res) => {
    // an error status answered by the proxy itself (a coordinator route failing), the coordinator not asked
    const code = status?.(req.url ?? '')
    if (code != null) {
      res.writeHead(code, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: 'unavailable', message: `HTTP ${code} from the test proxy` }))
      return
    }
    const chunks: Buffer[] = []
    req.on('data', (d: Buffer) => chunks.push(d))
    req.on('end', () => {
      const headers: Record<string, string> = {}
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length' && k !== 'connection') headers[k] = v
      fetch(target + req.url, { method: req.method, headers, body: chunks.length > 0 ? Buffer.concat(chunks) : undefined }).then(async (up) => {
        const body = tamper(req.url ?? '', new Uint8Array(await up.arrayBuffer()))
        const out: Record<string, string> = {}
        up.headers.forEach((v, k) => { if (k !== 'content-length' && k !== 'content-encoding' && k !== 'transfer-encoding' && k !== 'connection') out[k] = v })
        res.writeHead(up.status, out)
        res.end(body)
      }, (err) => { res.writeHead(502); res.end(String(err)) })
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as import('node:net').AddressInfo).port
  return { url: `http://127.0.0.1:${port}`, close: async () => { server.close(); server.closeAllConnections() } }
}

/**
 * A zstd body decoded, changed by `mutate`, and encoded again to exactly the
 * original length (padded with a zstd skippable frame), so a tampered segment
 * still has the size its table lists: only the block check can catch it.
 */
export function reencodeSameSize (body: Uint8Array, mutate: (raw: Uint8Array) => void): Uint8Array {
  const raw = new Uint8Array(zstdDecompressSync(body))
  mutate(raw)
  for (const level of [3, 9, 19]) {
    const frame = new Uint8Array(zstdCompressSync(raw, { params: { [zlibConstants.ZSTD_c_compressionLevel]: level } }))
    const pad = body.length - frame.length - 8
    if (pad < 0) continue
    const out = new Uint8Array(body.length)
    out.set(frame)
    const view = new DataView(out.buffer, frame.length, 8)
    view.setUint32(0, 0x184d2a50, true) // skippable frame magic
    view.setUint32(4, pad, true)
    return out
  }
  throw new Error('the changed data does not compress into the original size')
}
