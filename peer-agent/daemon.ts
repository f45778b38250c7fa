/**
 * The agent daemon (`trimswarm agent run --config FILE`): keeps every image
 * its policy assigns current, inside the policy's update windows, checking
 * every poll interval; runs the on-update hook after each new version;
 * stops cleanly on SIGTERM (an interrupted sync resumes on the next start).
 */
import { readFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { isValidName } from '../protocol/manifest.ts'
import { parseRate } from '../protocol/rate.ts'
import type { TransferMode, UpdateWindow } from '../protocol/api.ts'
import { ValidationError } from '../protocol/errors.ts'
import { createAgent, type Agent } from './agent.ts'
import { DEFAULT_POLL_SECONDS, DEFAULT_SITE } from './constants.ts'
import type { AgentAuth } from './coordinator-client.ts'
import type { DaemonMetrics } from './daemon-metrics.ts'
import type { AbortOptions, AgentLogger } from './interface.ts'

/** The daemon's config file (JSON), parsed and checked. */
export interface DaemonConfig {
  /** `coordinator`, or the `coordinators` list (failover). */
  coordinator: string[]
  auth: AgentAuth
  dataDir: string
  /** Image name -> output path. */
  images: Record<string, string>
  /** Where images the policy assigns but `images` does not list go (NAME.img); unset: such images are skipped with a warning. */
  outDir?: string
  /** Folders to index; unset = the policy's list. */
  indexFolders?: string[]
  site: string
  pollSeconds: number
  /** Bytes per second (0 = none). */
  wanLimit: number
  /** WAN transfer mode; unset = the policy's (background when it names none). */
  transfer?: TransferMode
  nice: boolean
  onUpdate?: string
  publicKey?: string
  /** LAN sharing when the policy allows it (default true; false = never). */
  lanSharing: boolean
  /** Swarm listen multiaddrs (default: all interfaces, random port). */
  listen?: string[]
  /** mDNS discovery (default true). */
  mdns: boolean
}

const FIELDS = [
  'coordinator', 'coordinators', 'tokenFile', 'user', 'passwordFile', 'dataDir', 'images', 'outDir', 'indexFolders', 'site',
  'pollSeconds', 'wanLimit', 'transfer', 'nice', 'onUpdate', 'publicKey', 'lanSharing', 'listen', 'mdns'
]

/** Parses a daemon config object; relative paths are resolved against `baseDir` (the config file's folder). */
export function parseDaemonConfig (raw: unknown, baseDir: string): DaemonConfig {
  const fail = (why: string): never => { throw new ValidationError(`agent config: ${why}`) }
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) fail('must be a JSON object')
  const c = raw as Record<string, unknown>
  for (const k of Object.keys(c)) if (!FIELDS.includes(k)) fail(`unknown field "${k}" (known: ${FIELDS.join(', ')})`)
  const str = (k: string, required: boolean): string | undefined => {
    const v = c[k]
    if (v == null) { if (required) fail(`"${k}" is required`); return undefined }
    if (typeof v !== 'string' || v === '') fail(`"${k}" must be a non-empty string`)
    return v as string
  }
  const path = (k: string, required: boolean): string | undefined => {
    const v = str(k, required)
    return v == null ? undefined : resolve(baseDir, v)
  }
  const list = c.coordinators
  const badList = list != null && (!Array.isArray(list) || list.length === 0 || list.some(u => typeof u !== 'string' || u === ''))
  if (badList) fail('"coordinators" must be a list of URLs')
  if ((list == null) === (c.coordinator == null)) fail('give either "coordinator" or a "coordinators" list')
  const coordinator = (list as string[] | undefined) ?? [str('coordinator', true)!]
  const tokenFile = path('tokenFile', false)
  const user = str('user', false)
  const passwordFile = path('passwordFile', false)
  let auth: AgentAuth
  if (tokenFile != null && user == null && passwordFile == null) auth = { tokenFile }
  else if (tokenFile == null && user != null && passwordFile != null) auth = { user, passwordFile }
  else auth = fail('give either "tokenFile", or "user" with "passwordFile"')
  const images: Record<string, string> = {}
  if (c.images != null) {
    if (typeof c.images !== 'object' || Array.isArray(c.images)) fail('"images" must map image names to output paths')
    for (const [name, out] of Object.entries(c.images as Record<string, unknown>)) {
      if (!isValidName(name)) fail(`bad image name ${JSON.stringify(name)}`)
      if (typeof out !== 'string' || out === '') fail(`images.${name} must be an output path`)
      images[name] = resolve(baseDir, out as string)
    }
  }
  let indexFolders: string[] | undefined
  if (c.indexFolders != null) {
    if (!Array.isArray(c.indexFolders) || !c.indexFolders.every(f => typeof f === 'string' && f !== '')) fail('"indexFolders" must be a list of folders')
    indexFolders = (c.indexFolders as string[]).map(f => resolve(baseDir, f))
  }
  const site = str('site', false) ?? DEFAULT_SITE
  if (!isValidName(site)) fail(`bad site ${JSON.stringify(site)}`)
  const pollSeconds = c.pollSeconds ?? DEFAULT_POLL_SECONDS
  if (typeof pollSeconds !== 'number' || !(pollSeconds > 0)) fail('"pollSeconds" must be a positive number')
  let wanLimit = 0
  if (c.wanLimit != null) {
    if (typeof c.wanLimit === 'number') wanLimit = c.wanLimit
    else if (typeof c.wanLimit === 'string') wanLimit = parseRate(c.wanLimit)
    else fail('"wanLimit" must be a rate like "20mbit" or bytes per second')
  }
  if (c.transfer != null && c.transfer !== 'background' && c.transfer !== 'foreground') fail('"transfer" must be "background" or "foreground"')
  if (c.nice != null && typeof c.nice !== 'boolean') fail('"nice" must be true or false')
  if (c.lanSharing != null && typeof c.lanSharing !== 'boolean') fail('"lanSharing" must be true or false')
  if (c.mdns != null && typeof c.mdns !== 'boolean') fail('"mdns" must be true or false')
  if (c.listen != null && (!Array.isArray(c.listen) || c.listen.some((a: unknown) => typeof a !== 'string' || !a.startsWith('/')))) {
    fail('"listen" must be a list of multiaddrs like "/ip4/0.0.0.0/tcp/4100"')
  }
  return {
    coordinator,
    auth,
    dataDir: path('dataDir', true)!,
    images,
    outDir: path('outDir', false),
    indexFolders,
    site,
    pollSeconds: pollSeconds as number,
    wanLimit,
    transfer: c.transfer as TransferMode | undefined,
    nice: c.nice === true,
    onUpdate: str('onUpdate', false),
    publicKey: str('publicKey', false),
    lanSharing: c.lanSharing !== false,
    listen: c.listen as string[] | undefined,
    mdns: c.mdns !== false
  }
}

/** Reads and parses a daemon config file. */
export async function loadDaemonConfig (file: string): Promise<DaemonConfig> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new ValidationError(`cannot read agent config ${file}: ${(err as Error).message}`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new ValidationError(`agent config ${file} is not JSON: ${(err as Error).message}`)
  }
  return parseDaemonConfig(raw, dirname(resolve(file)))
}

/** Whether `now` (local time) is inside one of the windows; no windows = always. */
export function inUpdateWindow (windows: UpdateWindow[], now: Date = new Date()): boolean {
  if (windows.length === 0) return true
  const minutes = now.getHours() * 60 + now.getMinutes()
  const toMin = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5))
  return windows.some(({ start, end }) => {
    const s = toMin(start)
    const e = toMin(end)
    if (s === e) return true // a full day
    return s < e ? minutes >= s && minutes < e : minutes >= s || minutes < e
  })
}

/** The running daemon. */
export interface Daemon {
  /** Runs until the signal aborts; resolves after the current sync stopped. */
  run: (options: AbortOptions) => Promise<void>
  /** One round: sync every assigned image that needs it. */
  checkOnce: (options?: AbortOptions) => Promise<void>
}

/** Creates the daemon for a config. */
export async function createDaemon (components: { logger: AgentLogger, metrics?: DaemonMetrics }, config: DaemonConfig): Promise<Daemon> {
  const { logger, metrics } = components
  const agent: Agent = await createAgent({ logger }, {
    coordinator: config.coordinator,
    auth: config.auth,
    dataDir: config.dataDir,
    indexFolders: config.indexFolders,
    wanLimit: config.wanLimit,
    // the daemon runs unattended: background unless the config or the policy says foreground
    transfer: config.transfer ?? 'policy',
    site: config.site,
    publicKey: config.publicKey,
    lan: { enabled: config.lanSharing, listen: config.listen, mdns: config.mdns }
  })
  const warned = new Set<string>()

  async function checkOnce (options: AbortOptions = {}): Promise<void> {
    const me = await agent.client.me(options)
    const allowed = me.policy.images
    const wanted = new Map<string, string>()
    for (const [name, out] of Object.entries(config.images)) {
      if (allowed.includes('*') || allowed.includes(name)) wanted.set(name, out)
      else if (!warned.has(name)) {
        warned.add(name)
        logger.warn(`image ${name} is configured but the policy does not assign it to this agent; skipped`)
      }
    }
    for (const name of allowed) {
      if (name === '*' || wanted.has(name)) continue
      if (config.outDir != null) wanted.set(name, join(config.outDir, `${name}.img`))
      else if (!warned.has(name)) {
        warned.add(name)
        logger.warn(`the policy assigns image ${name} but the config names no output for it (add it to "images" or set "outDir")`)
      }
    }
    if (!inUpdateWindow(me.policy.updateWindows)) {
      logger.info(`outside the update window (${me.policy.updateWindows.map(w => `${w.start}-${w.end}`).join(', ')}); not syncing now`)
      return
    }
    for (const [image, out] of wanted) {
      options.signal?.throwIfAborted()
      try {
        const s = await agent.syncImage({ image, out, onUpdate: config.onUpdate, signal: options.signal })
        metrics?.sync(image, s.upToDate ? 'current' : 'updated', s.upToDate ? undefined : s.bytes)
        if (!s.upToDate) {
          const from = `local ${s.bytes.local}, peers ${s.bytes.peers}, origin ${s.bytes.origin} bytes`
          const fields = { image, version: s.version, out, bytes: s.bytes, seconds: s.seconds }
          logger.info(`${image}: ${out} is now ${s.version} (${from}, ${s.seconds.toFixed(1)} s)`, fields)
        }
      } catch (err) {
        if (options.signal?.aborted === true) throw err
        metrics?.sync(image, 'failed')
        logger.warn(`${image}: sync failed: ${(err as Error).message}; will retry at the next check`, { image, error: (err as Error).message })
      }
    }
  }

  return {
    checkOnce,
    async run (options) {
      const stopped = (): boolean => options.signal?.aborted === true
      try {
        while (!stopped()) {
          try {
            await checkOnce(options)
          } catch (err) {
            if (stopped()) break
            metrics?.checkFailed()
            logger.warn(`check failed: ${(err as Error).message}; next try in ${config.pollSeconds} s`)
          }
          await agent.events.flush(options).catch(() => 0)
          try {
            await sleep(config.pollSeconds * 1000, undefined, { signal: options.signal })
          } catch {
            break
          }
        }
      } finally {
        await agent.close()
      }
    }
  }
}
