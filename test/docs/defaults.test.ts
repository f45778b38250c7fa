/**
 * Documented defaults are the code's defaults. The operator docs show values ("6 tries",
 * "500 ms", "64 MiB"), never a constant's name in place of its value; this test reads every
 * table of docs/CONFIGURATION.md and docs/OPERATIONS.md and fails when a default cell names
 * a constant, or when a documented value differs from the constant it stands for.
 */
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import * as protocolConstants from '../../protocol/constants.ts'
import { CLAIM_GROUP_CHUNKS } from '../../protocol/block-exchange.ts'
import * as chunkerConstants from '../../chunker/constants.ts'
import * as clientConstants from '../../client/constants.ts'
import * as agentConstants from '../../peer-agent/constants.ts'
import * as swarmConstants from '../../peer-agent/swarm/constants.ts'
import * as coordinatorConstants from '../../coordinator/constants.ts'
import * as consoleConstants from '../../coordinator/console/constants.ts'
import * as metaStoreConstants from '../../coordinator/meta-store/constants.ts'
import { DEFAULT_CAPABILITY_TTL_SECONDS, SWARM_PEER_TTL_SECONDS, SWARM_PEERS_LISTED } from '../../coordinator/swarm-routes.ts'

const DOCS = join(import.meta.dirname, '..', '..', 'docs')
const CLI = join(import.meta.dirname, '..', '..', 'bin', 'trimswarm.js')
const exec = promisify(execFile)

/** Every constant a doc may document, by name. */
const CONSTANTS: Record<string, unknown> = {
  ...protocolConstants,
  ...chunkerConstants,
  ...clientConstants,
  ...agentConstants,
  ...swarmConstants,
  ...coordinatorConstants,
  ...consoleConstants,
  ...metaStoreConstants,
  CLAIM_GROUP_CHUNKS,
  DEFAULT_CAPABILITY_TTL_SECONDS,
  SWARM_PEER_TTL_SECONDS,
  SWARM_PEERS_LISTED,
  // the coordinator's DEFAULT_LISTEN has the same name
  SWARM_DEFAULT_LISTEN: swarmConstants.DEFAULT_LISTEN
}

/** Every value a constant name has in some module (a few names exist twice, e.g. DEFAULT_LISTEN of the coordinator and of the swarm). */
const VALUES: Record<string, unknown[]> = {}
for (const mod of [protocolConstants, chunkerConstants, agentConstants, swarmConstants, coordinatorConstants, consoleConstants, metaStoreConstants, { CLAIM_GROUP_CHUNKS, DEFAULT_CAPABILITY_TTL_SECONDS, SWARM_PEER_TTL_SECONDS, SWARM_PEERS_LISTED }]) {
  for (const [k, v] of Object.entries(mod)) (VALUES[k] ??= []).push(v)
}

/**
 * Rows whose default stands for a constant, keyed by file, then by the row's first cell.
 * A row documented with a "constant" column is checked without being listed here.
 */
const ROWS: Record<string, Record<string, string>> = {
  'CONFIGURATION.md': {
    'ldap > `userFilter`': 'DEFAULT_LDAP_USER_FILTER',
    'ldap > `userNameAttribute`': 'DEFAULT_LDAP_USER_NAME_ATTRIBUTE',
    'ldap > `groupSource`': 'DEFAULT_LDAP_GROUP_SOURCE',
    'ldap > `memberOfAttribute`': 'DEFAULT_LDAP_MEMBER_OF_ATTRIBUTE',
    'ldap > `groupFilter`': 'DEFAULT_LDAP_GROUP_FILTER',
    'ldap > `groupNameAttribute`': 'DEFAULT_LDAP_GROUP_NAME_ATTRIBUTE',
    'ldap > `timeoutMs`': 'DEFAULT_LDAP_TIMEOUT_MS',
    'ldap > `connectTimeoutMs`': 'DEFAULT_LDAP_CONNECT_TIMEOUT_MS',
    'coordinator > `listen`': 'DEFAULT_LISTEN',
    'coordinator > `adminGroups`': 'DEFAULT_ADMIN_GROUPS',
    'coordinator > `sessionTtlSeconds`': 'DEFAULT_SESSION_TTL_SECONDS',
    'coordinator > `eventRetentionDays`': 'DEFAULT_EVENT_RETENTION_DAYS',
    'coordinator > `limits.maxJsonBodyBytes`': 'DEFAULT_MAX_JSON_BODY_BYTES',
    'coordinator > `limits.maxBodyBytes`': 'DEFAULT_MAX_BODY_BYTES',
    'coordinator > `loginRateLimit.windowSeconds`': 'DEFAULT_LOGIN_WINDOW_SECONDS',
    'coordinator > `loginRateLimit.maxPerIp`': 'DEFAULT_LOGIN_MAX_PER_IP',
    'coordinator > `loginRateLimit.maxFailuresPerUser`': 'DEFAULT_LOGIN_MAX_FAILURES_PER_USER',
    'coordinator > `storageGc.intervalSeconds`': 'DEFAULT_GC_INTERVAL_SECONDS',
    'coordinator > `storageGc.graceSeconds`': 'DEFAULT_GC_GRACE_SECONDS',
    'coordinator > `limits.maxBufferedBodyBytes`': 'DEFAULT_MAX_BUFFERED_BODY_BYTES',
    'coordinator images > `originZstd.level`': 'ORIGIN_ZSTD_LEVEL',
    'coordinator images > `originZstd.windowLog`': 'ORIGIN_ZSTD_WINDOW_LOG',
    'coordinator images > `deltaPackZstd.level`': 'DELTA_PACK_ZSTD_LEVEL',
    'coordinator images > `deltaPackZstd.windowLog`': 'DELTA_PACK_ZSTD_WINDOW_LOG',
    'coordinator images > `maxConcurrentBatches`': 'ORIGIN_MAX_CONCURRENT_BATCHES',
    'coordinator images > `batchStallMs`': 'ORIGIN_BATCH_STALL_MS',
    '`trimswarm agent sync NAME[@VERSION]` > `--site NAME`': 'DEFAULT_SITE',
    '`trimswarm agent sync NAME[@VERSION]` > `--listen MULTIADDR`': 'SWARM_DEFAULT_LISTEN',
    '`trimswarm agent sync NAME[@VERSION]` > `--linger SECONDS`': 'DEFAULT_LINGER_SECONDS',
    '`trimswarm agent sync NAME[@VERSION]` > `--retries N`': 'RETRY_ATTEMPTS',
    '`trimswarm agent sync NAME[@VERSION]` > `--retry-delay MS`': 'RETRY_BASE_MS',
    'Daemon config (`trimswarm agent run --config FILE`) > `site`': 'DEFAULT_SITE',
    'Daemon config (`trimswarm agent run --config FILE`) > `pollSeconds`': 'DEFAULT_POLL_SECONDS',
    'Daemon config (`trimswarm agent run --config FILE`) > `listen`': 'SWARM_DEFAULT_LISTEN',
    '`createSwarm` options (`SwarmInit`) > `listen`': 'SWARM_DEFAULT_LISTEN',
    '`createSwarm` options (`SwarmInit`) > `maxPeers`': 'DEFAULT_MAX_PEERS'
  }
}

/** Ways a value may be written for people: "500 ms" or "0.5 s", "64 MiB", "8 h", `"uid"`... */
export function spellings (name: string, value: unknown): string[] {
  if (typeof value === 'string') return [`\`${value}\``, `"${value}"`]
  if (Array.isArray(value)) return [`\`${JSON.stringify(value)}\``, value.map(v => `\`${String(v)}\``).join(', ')]
  if (typeof value === 'boolean') return [`\`${value}\``, String(value)]
  if (typeof value !== 'number') return []
  const n = (x: number): string[] => [String(x), x.toLocaleString('en-US')]
  const units: Array<[RegExp, Array<[string, number]>]> = [
    [/_MS$/, [['ms', 1], ['s', 1000], ['min', 60_000], ['h', 3_600_000], ['days', 86_400_000]]],
    [/_SECONDS$/, [['s', 1], ['min', 60], ['h', 3600], ['days', 86_400]]],
    [/_DAYS$/, [['days', 1]]],
    [/_BYTES$/, [['bytes', 1], ['KiB', 1024], ['MiB', 1024 ** 2], ['GiB', 1024 ** 3]]]
  ]
  for (const [suffix, list] of units) {
    if (!suffix.test(name)) continue
    return list.filter(([, size]) => value % size === 0 || (value / size) * 4 % 1 === 0)
      .flatMap(([unit, size]) => n(value / size).map(v => `${v} ${v === '1' && unit === 'days' ? 'day' : unit}`))
  }
  return n(value)
}

/** The tables of a markdown file: the heading they are under, header cells and rows of cells. */
function tables (markdown: string): Array<{ heading: string, header: string[], rows: string[][] }> {
  const out: Array<{ heading: string, header: string[], rows: string[][] }> = []
  const lines = markdown.split('\n')
  let heading = ''
  const cells = (line: string): string[] => line.trim().replace(/^\||\|$/g, '').split(/(?<!\\)\|/).map(c => c.trim())
  for (let i = 0; i < lines.length - 1; i++) {
    if (/^#{2,4} /.test(lines[i])) heading = lines[i].replace(/^#+ /, '').trim()
    if (!lines[i].trim().startsWith('|') || !/^\|\s*-{3}/.test(lines[i + 1].trim())) continue
    const header = cells(lines[i]).map(h => h.toLowerCase())
    const rows: string[][] = []
    for (i += 2; i < lines.length && lines[i].trim().startsWith('|'); i++) rows.push(cells(lines[i]))
    out.push({ heading, header, rows })
  }
  return out
}

const CONSTANT_NAME = /`?\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b`?/g
const ENVIRONMENT = /^`?(TRIMSWARM_[A-Z_]+|NODE_[A-Z_]+|GLIBC_TUNABLES|XDG_CACHE_HOME|INVOCATION_ID|JOURNAL_STREAM)`?$/

/** Whether `cell` shows `value` (one of its spellings, as a whole word). */
function shows (cell: string, name: string, value: unknown): boolean {
  return spellings(name, value).some(s => new RegExp(`(^|[^\\w.])${s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|[^\\w])`).test(cell))
}

describe('documented exit codes', () => {
  it('docs/OPERATIONS.md "Exit codes" lists the codes `trimswarm --help` lists', async () => {
    const text = readFileSync(join(DOCS, 'OPERATIONS.md'), 'utf8')
    const table = tables(text).find(t => t.heading === 'Exit codes')
    expect(table).toBeDefined()
    const documented = table!.rows.map(r => Number(r[0]))
    const { stdout } = await exec(process.execPath, [CLI, '--help'])
    const help = stdout.slice(stdout.indexOf('Exit codes'))
    const listed = [...help.matchAll(/^ {2}(\d+)\s/gm)].map(m => Number(m[1]))
    expect(documented).toEqual(listed)
    expect(listed).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 65, 70, 75, 78])
  })
})

describe('documented defaults', () => {
  it('spellings: the units a constant\'s name implies', () => {
    expect(spellings('RETRY_BASE_MS', 500)).toContain('500 ms')
    expect(spellings('RETRY_MAX_MS', 30_000)).toContain('30 s')
    expect(spellings('JSON_MAX_BYTES', 64 * 1024 * 1024)).toContain('64 MiB')
    expect(spellings('DEFAULT_SESSION_TTL_SECONDS', 28_800)).toContain('8 h')
    expect(shows('| 6 tries |', 'RETRY_ATTEMPTS', 6)).toBe(true)
    expect(shows('| 60 tries |', 'RETRY_ATTEMPTS', 6)).toBe(false)
    expect(shows('1.5 s', 'SETTLE_MS', 1500)).toBe(true)
  })

  // BENCHMARKS.md is left out: it records measurements with the values of their day
  for (const file of ['CONFIGURATION.md', 'OPERATIONS.md', 'ARCHITECTURE.md', 'PROTOCOL.md', 'SECURITY.md']) {
    const text = readFileSync(join(DOCS, file), 'utf8')

    // PROTOCOL.md's value columns are byte-level specs that name the constant beside its value on purpose
    if (file !== 'PROTOCOL.md') it(`${file}: default and value cells show values, not constant names`, () => {
      const offenders: string[] = []
      for (const t of tables(text)) {
        const cols = t.header.map((h, i) => /^(default|value)$/.test(h) ? i : -1).filter(i => i >= 0)
        for (const row of t.rows) {
          for (const c of cols) {
            const names = (row[c] ?? '').match(CONSTANT_NAME)?.filter(w => !ENVIRONMENT.test(w)) ?? []
            if (names.length > 0) offenders.push(`${row[0]}: ${row[c]}`)
          }
        }
      }
      expect(offenders).toEqual([])
    })

    it(`${file}: every documented default equals the constant it stands for`, () => {
      const checked: string[] = []
      const seen = new Set<string>()
      const wrong: string[] = []
      for (const t of tables(text)) {
        const valueCol = t.header.findIndex(h => /^(default|value)$/.test(h))
        const constantCol = t.header.indexOf('constant')
        if (valueCol < 0) continue
        for (const row of t.rows) {
          const names = constantCol >= 0 ? [...(row[constantCol] ?? '').matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map(m => m[1]) : []
          const mapped = ROWS[file]?.[`${t.heading} > ${row[0]}`]
          if (mapped != null) seen.add(`${t.heading} > ${row[0]}`)
          for (const name of mapped != null ? [mapped] : names) {
            expect(CONSTANTS, `${file}: ${row[0]} names unknown constant ${name}`).toHaveProperty(name)
            checked.push(name)
            if (!shows(row[valueCol], name, CONSTANTS[name])) wrong.push(`${row[0]}: documented "${row[valueCol]}", code ${name} = ${JSON.stringify(CONSTANTS[name])}`)
          }
        }
      }
      expect(wrong).toEqual([])
      // every mapped row is still in the docs
      for (const key of Object.keys(ROWS[file] ?? {})) expect(seen, `${file}: row ${key}`).toContain(key)
    })

    it(`${file}: a constant named anywhere has its value beside it`, () => {
      const bare: string[] = []
      // code blocks may name constants as code does
      const prose = text.replace(/^```[\s\S]*?^```/gm, '')
      for (const m of prose.matchAll(/`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`/g)) {
        const name = m[1]
        // numbers written in hex beside multicodec names, file modes in octal, text with line breaks: shown as the docs write them
        const values = (VALUES[name] ?? []).filter(v => typeof v !== 'object' && spellings(name, v).length > 0 && !/_(CODE|MODE)$/.test(name) && !String(v).includes('\n'))
        if (values.length === 0) continue
        const around = prose.slice(Math.max(0, m.index - 150), m.index + m[0].length + 150)
        if (!values.some(v => shows(around, name, v))) bare.push(name)
      }
      expect(bare).toEqual([])
    })
  }
})
