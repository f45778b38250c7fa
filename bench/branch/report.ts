/**
 * Results of a branch benchmark run and their rendering as report.md and
 * report.json. Pure: the runner fills the data, this file only shapes it.
 */
import type { Method } from './flags.ts'
import type { RatePoint } from './counters.ts'
import { payloadBytes, relativeDifference } from './counters.ts'
import { ACCOUNTING_TOLERANCE } from './constants.ts'

/** What one client (agent, curl, casync) did in one scenario x method. */
export interface ClientResult {
  client: number
  /** Seconds from the method's start until this client's image was in place (trimswarm: output replaced; others: exit). */
  seconds: number
  /** Seconds until the process exited (a trimswarm agent may linger to serve peers). */
  exitSeconds?: number
  ok: boolean
  /** Output's b3sum equals the expected image's. */
  verified: boolean
  /** trimswarm's own summary (--json), when the client is a trimswarm agent. */
  reported?: { local: number, peers: number, origin: number }
  /** CPU seconds (user + system, /proc) of the client process until its image was in place; not its children's. */
  cpuSeconds?: number
  /** The part of cpuSeconds spent in the kernel (/proc stime): what a VM's costly fresh memory inflates (docs/BENCHMARKS.md "Session 16"). */
  systemSeconds?: number
  error?: string
}

/** One cell row of the report: a method in a scenario. */
export interface MethodResult {
  scenario: string
  method: Method
  /** False when the method was not run (see note). */
  ran: boolean
  note?: string
  clients: ClientResult[]
  /** Bytes on the shaped WAN link, hq -> branch and branch -> hq (interface counters). */
  wanDown: number
  wanUp: number
  /** Packets hq -> branch and branch -> hq on the link (0 when unknown: proxy mode). */
  wanDownPackets: number
  wanUpPackets: number
  /** Bytes over the branch LAN (interface counters, or trimswarm's reported peers bytes in proxy mode). */
  lan: number
  /** Bytes taken from the clients' own disks (trimswarm's report; null when the method does not tell). */
  local: number | null
  firstDoneSeconds: number | null
  allDoneSeconds: number | null
  /** WAN throughput while the method ran. */
  throughput: RatePoint[]
  /** CPU seconds the coordinator spent while the method ran (absent in reports of before). */
  coordinatorCpuSeconds?: number
}

/** A whole run. */
export interface BranchReport {
  date: string
  machine: string
  /** 'netns' (real namespaces, veth, tc tbf) or 'proxy' (127.0.0.1 shaping proxy). */
  mode: 'netns' | 'proxy'
  config: {
    agents: number
    wan: string
    wanRttMs: number
    lan: string
    images: string
    scenarios: string[]
  }
  /** How the network was built and measured, for the reader. */
  notes: string[]
  results: MethodResult[]
}

/** Total WAN bytes of a result. */
export function wanBytes (r: MethodResult): number {
  return r.wanDown + r.wanUp
}

/** trimswarm's own origin bytes summed over its clients; null when none reported. */
export function reportedOrigin (r: MethodResult): number | null {
  const rs = r.clients.map(c => c.reported).filter(x => x != null)
  if (rs.length === 0) return null
  return rs.reduce((s, x) => s + x.origin, 0)
}

/** WAN saved against the plain HTTP download of the same scenario, percent; null without that baseline. */
export function wanSavedPercent (r: MethodResult, all: MethodResult[]): number | null {
  const base = all.find(x => x.scenario === r.scenario && x.method === 'http' && x.ran)
  if (base == null || wanBytes(base) === 0 || !r.ran) return null
  return (1 - wanBytes(r) / wanBytes(base)) * 100
}

/**
 * The accounting check: trimswarm's reported origin bytes (payload) against
 * the bytes hq -> branch on the link, with the per-packet headers removed
 * (headers are not payload; when packets are unknown the link bytes are used as they are).
 * `linkDifference` compares with the raw link bytes, headers included. Null when not applicable.
 */
export function accountingCheck (r: MethodResult): { reported: number, link: number, linkPayload: number, difference: number, linkDifference: number, ok: boolean } | null {
  const reported = reportedOrigin(r)
  if (reported == null || !r.ran) return null
  const linkPayload = payloadBytes(r.wanDown, r.wanDownPackets)
  const difference = relativeDifference(reported, linkPayload)
  return { reported, link: r.wanDown, linkPayload, difference, linkDifference: relativeDifference(reported, r.wanDown), ok: difference <= ACCOUNTING_TOLERANCE }
}

/** Bytes for people: "12.3 MB" (decimal, as network teams count). */
export function formatBytes (n: number | null): string {
  if (n == null) return 'n/a'
  if (n < 1e3) return `${n} B`
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`
  return `${(n / 1e9).toFixed(2)} GB`
}

/** Seconds for people. */
export function formatSeconds (s: number | null): string {
  return s == null ? 'n/a' : `${s.toFixed(1)} s`
}

/** Escapes a value for a Markdown table cell. */
export function mdCell (text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ')
}

/** The scenario x method table as Markdown rows (header included). */
export function resultTable (results: MethodResult[]): string {
  const lines = [
    '| scenario | method | WAN bytes | LAN bytes | local bytes | first client done | all done | WAN saved vs HTTP | verified |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |'
  ]
  for (const r of results) {
    const saved = wanSavedPercent(r, results)
    const verified = r.ran ? `${r.clients.filter(c => c.verified).length}/${r.clients.length}` : 'n/a'
    const cells = r.ran
      ? [r.scenario, r.note != null ? `${r.method} (${r.note})` : r.method, formatBytes(wanBytes(r)), formatBytes(r.lan), formatBytes(r.local),
          formatSeconds(r.firstDoneSeconds), formatSeconds(r.allDoneSeconds),
          saved == null ? 'n/a' : `${saved.toFixed(1)} %`, verified]
      : [r.scenario, r.method, 'not run', '', '', '', '', '', r.note ?? '']
    lines.push(`| ${cells.map(c => mdCell(String(c))).join(' | ')} |`)
  }
  return lines.join('\n')
}

/** report.md in full. */
export function renderMarkdown (report: BranchReport, charts: string[]): string {
  const c = report.config
  const out: string[] = [
    '# trimswarm branch-office benchmark',
    '',
    `${report.date} on ${mdCell(report.machine)}.`,
    '',
    `${c.agents} clients in the branch; WAN ${c.wan} each way, ${c.wanRttMs} ms added round trip; LAN ${c.lan === '0' ? 'not shaped' : c.lan}; images from ${mdCell(c.images)}; network: ${report.mode === 'netns' ? 'network namespaces + veth + tc tbf' : 'shaping proxy on 127.0.0.1 (not root: no namespaces)'}.`,
    '',
    resultTable(report.results),
    '',
    'Columns: WAN bytes = bytes both ways on the shaped WAN link (interface counters, headers included); LAN bytes = bytes between clients inside the branch; local bytes = what trimswarm took from the clients\' own disks (its own report); times from the start of the method to a client\'s exit; WAN saved = 1 - WAN bytes / WAN bytes of the plain HTTP download in the same scenario; verified = outputs whose b3sum equals the image\'s.',
    ''
  ]
  const checks = report.results.map(r => [r, accountingCheck(r)] as const).filter(([, a]) => a != null)
  if (checks.length > 0) {
    out.push('## trimswarm\'s own accounting against the link', '')
    out.push('| scenario | reported origin bytes (sum of agents) | link hq -> branch, headers included | same, headers removed | difference (payload) | difference (with headers) | within 5 % |', '| --- | ---: | ---: | ---: | ---: | ---: | --- |')
    for (const [r, a] of checks) {
      if (a == null) continue
      out.push(`| ${r.scenario} | ${formatBytes(a.reported)} | ${formatBytes(a.link)} | ${formatBytes(a.linkPayload)} | ${(a.difference * 100).toFixed(1)} % | ${(a.linkDifference * 100).toFixed(1)} % | ${a.ok ? 'yes' : 'NO'} |`)
    }
    out.push('')
  }
  const failed = report.results.flatMap(r => r.clients.filter(x => !x.ok || !x.verified).map(x => `${r.scenario}/${r.method} client ${x.client}: ${x.ok ? 'output does not verify' : (x.error ?? 'failed')}`))
  if (failed.length > 0) {
    out.push('## Failures', '', ...failed.map(f => `- ${mdCell(f)}`), '')
  }
  out.push('## Notes', '', ...report.notes.map(n => `- ${n}`), '')
  if (charts.length > 0) {
    out.push('## Charts', '', ...charts.map(f => `![${f}](${f})`), '')
  }
  return out.join('\n')
}

/** report.json: the report plus the derived figures, so scripts need not recompute them. */
export function renderJson (report: BranchReport): string {
  return JSON.stringify({
    ...report,
    results: report.results.map(({ ...r }) => ({
      ...r,
      wan: wanBytes(r),
      wanSavedPercent: wanSavedPercent(r, report.results),
      accounting: accountingCheck(r)
    }))
  }, null, 2) + '\n'
}
