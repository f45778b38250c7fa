/**
 * Which site an agent is at, decided by the coordinator rather than by what
 * the agent says, in this order:
 *   1. the site the admin bound its machine token to (`token create --site`);
 *   2. the config's `sites` subnet map applied to the client address;
 *   3. only then the site the agent names (`agent sync --site`, a hint), and
 *      at most `maxHints` distinct ones per token or user, remembered in the
 *      metadata database (sublevel `site-hints`), so one token cannot invent
 *      sites without end. The admin is trusted: its hint is taken as is.
 * With 1 or 2 the agent's hint is ignored. "Known" sites are therefore the
 * configured ones, the tokens' and the hints accepted within the cap.
 */
import { ForbiddenError } from '../protocol/errors.ts'
import { principalKey } from './access.ts'
import { DEFAULT_MAX_SITE_HINTS_PER_TOKEN } from './constants.ts'
import type { Principal } from './interface.ts'
import type { MetaDb } from './meta-db.ts'
import type { SiteMap } from './sites.ts'

/** The site the agent gets when it names none and the coordinator has none for it (the agent's own default). */
export const UNNAMED_SITE = 'default'

/** Where a site came from. */
export type SiteSource = 'token' | 'subnet' | 'hint'

/** Decides the site of a caller. */
export interface SiteAssigner {
  start: () => Promise<void>
  /** The site the coordinator itself has for the caller (token site, then subnet), or undefined. */
  assigned: (principal: Principal, address: string) => string | undefined
  /** The caller's site; throws ForbiddenError when it names one site too many. */
  siteOf: (principal: Principal, address: string, hint?: string) => Promise<{ site: string, source: SiteSource }>
}

/** Options of createSiteAssigner. */
export interface SiteAssignerInit {
  /** Distinct hinted sites per token or user (DEFAULT_MAX_SITE_HINTS_PER_TOKEN). */
  maxHints?: number
}

const SEP = '\x00' // names cannot hold NUL (protocol/schema.ts)

/** A SiteAssigner over the config's site map; with `db`, accepted hints survive a restart. */
export function createSiteAssigner (components: { siteMap: SiteMap, db?: MetaDb }, init: SiteAssignerInit = {}): SiteAssigner {
  const maxHints = init.maxHints ?? DEFAULT_MAX_SITE_HINTS_PER_TOKEN
  const hintsDb = components.db?.sublevel<string, string>('site-hints', { valueEncoding: 'utf8' })
  const hints = new Map<string, Set<string>>()
  const hintsOf = (key: string): Set<string> => {
    let s = hints.get(key)
    if (s == null) { s = new Set(); hints.set(key, s) }
    return s
  }

  return {
    async start () {
      hints.clear()
      if (hintsDb == null) return
      for await (const k of hintsDb.keys()) {
        const i = k.indexOf(SEP)
        hintsOf(k.slice(0, i)).add(k.slice(i + 1))
      }
    },
    assigned (principal, address) {
      return principal.site ?? components.siteMap.siteFor(address)
    },
    async siteOf (principal, address, hint) {
      if (principal.site != null) return { site: principal.site, source: 'token' }
      const mapped = components.siteMap.siteFor(address)
      if (mapped != null) return { site: mapped, source: 'subnet' }
      const site = hint ?? UNNAMED_SITE
      if (principal.kind === 'admin') return { site, source: 'hint' }
      const key = principalKey(principal)
      if (hintsOf(key).has(site)) return { site, source: 'hint' }
      const db = components.db
      if (db == null) return await addHint(key, site, principal.user)
      // a new site: the cap counts what every coordinator sharing the store accepted
      return await db.lock(`site-hints:${key}`, async () => {
        if (db.shared && hintsDb != null) {
          const stored = new Set<string>()
          for await (const k of hintsDb.keys({ gt: `${key}${SEP}`, lt: `${key}${SEP}\xff` })) stored.add(k.slice(key.length + 1))
          hints.set(key, stored)
        }
        return await addHint(key, site, principal.user)
      })
    }
  }

  async function addHint (key: string, site: string, who: string): Promise<{ site: string, source: 'hint' }> {
    const known = hintsOf(key)
    if (!known.has(site)) {
      if (known.size >= maxHints) {
        const named = `${[...known].slice(0, 5).join(', ')}${known.size > 5 ? ', ...' : ''}`
        throw new ForbiddenError(`${who} already named ${known.size} sites (${named}), the most one token or user may name itself; ` +
          'the admin can bind the token to its site (trimswarm token create --site) or map the agents\' subnets in the config\'s "sites"')
      }
      known.add(site)
      await hintsDb?.put(`${key}${SEP}${site}`, '')
    }
    return { site, source: 'hint' }
  }
}
