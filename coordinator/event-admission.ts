/**
 * What the coordinator takes from an agent's events, decided before the event
 * store sees them (docs/SECURITY.md, "holder of a valid machine token"):
 *   - only images the caller's policy gives, and versions that exist; except
 *     that an agent's own `sync.failed` for an image it cannot get or a
 *     version that does not exist (a typo, a retired name, a policy that
 *     changed) is the admin's news: it is kept in the event log, bound to the
 *     caller like any event and without byte counts, but changes no agent
 *     state and no report row (`logOnly`);
 *   - the site the coordinator assigns (site-assignment.ts), not the event's;
 *   - the agent bound to the caller: the stored name is `<owner>/<name>`
 *     (owner `t:<token id>` or `u:<user>`), so a token can only move the state
 *     of its own agents; the free-text name stays as the label;
 *   - a time later than the coordinator's clock plus the allowed skew becomes
 *     the arrival time (a future time would freeze the agent's state);
 *   - byte counts above the version's size are clamped to it.
 * The admin token is trusted (imports, tests): its events are taken as sent.
 * Planning is pure (admitEvent); the routes fetch what it needs first.
 */
import type { AgentEvent, VersionInfo } from '../protocol/api.ts'

/** Why an event was not taken. */
export type RejectReason = 'image' | 'version' | 'site'

/** What admitEvent needs to know about the batch, looked up beforehand. */
export interface AdmissionContext {
  /** The caller's principal key (access.ts principalKey); undefined for the admin. */
  owner?: string
  /** Arrival time, ms since the epoch. */
  receivedMs: number
  /** Allowed clock skew into the future, ms. */
  skewMs: number
  /** Whether the caller may get `image`. */
  canAccess: (image: string) => boolean
  /** The version's info, or undefined when it does not exist. */
  infoOf: (image: string, version: string) => VersionInfo | undefined
  /** The site the coordinator assigns for this hint, or undefined when it refused the hint. */
  siteOf: (hint: string) => string | undefined
}

/** Longest stored agent name (protocol AgentEvent.agent). */
const MAX_AGENT = 128

/** The stored agent name: the owner, then as much of the agent's own name as fits. */
export function boundAgent (owner: string, agent: string): string {
  return `${owner}/${agent}`.slice(0, MAX_AGENT)
}

const clampBytes = (n: number, max: number): number => Math.min(Math.max(0, n), max)

/** Whether an event is kept in the log only, whatever version it names (see the module comment). */
export function logOnlyKind (ev: AgentEvent): boolean {
  return ev.type === 'sync.failed'
}

/** The event as stored (`logOnly`: in the event log only), or why it is refused. */
export function admitEvent (ev: AgentEvent, ctx: AdmissionContext): { event: AgentEvent, logOnly: boolean } | { rejected: RejectReason } {
  if (ctx.owner == null) return { event: ev, logOnly: false }
  const access = ctx.canAccess(ev.image)
  const info = access ? ctx.infoOf(ev.image, ev.version) : undefined
  if (info == null && !logOnlyKind(ev)) return { rejected: access ? 'version' : 'image' }
  const site = ctx.siteOf(ev.site)
  if (site == null) return { rejected: 'site' }
  const out: AgentEvent = { ...ev, site, agent: boundAgent(ctx.owner, ev.agent) }
  if (Date.parse(ev.time) > ctx.receivedMs + ctx.skewMs) out.time = new Date(ctx.receivedMs).toISOString()
  if (info == null) {
    // nothing to bound the byte counts by, and nothing they could count towards
    delete out.bytes
    delete out.totalBytes
    return { event: out, logOnly: true }
  }
  if (ev.bytes != null) {
    out.bytes = { local: clampBytes(ev.bytes.local, info.size),
      peers: clampBytes(ev.bytes.peers, info.size), origin: clampBytes(ev.bytes.origin, info.size) }
  }
  if (ev.totalBytes != null) out.totalBytes = clampBytes(ev.totalBytes, info.size)
  return { event: out, logOnly: false }
}
