/** Maps client addresses to site names with the config's `sites` (IPv4 subnet -> site). */
import { ConfigError } from './errors.ts'

interface Subnet { base: number, mask: number, bits: number, site: string }

function ipv4ToInt (ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip.replace(/^::ffff:/, ''))
  if (m == null) return undefined
  const parts = m.slice(1).map(Number)
  if (parts.some(p => p > 255)) return undefined
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0
}

/** Looks up the site of a client address; the most specific subnet wins. */
export interface SiteMap {
  siteFor: (address: string) => string | undefined
}

/** Builds a SiteMap from `{ "10.1.0.0/16": "paris" }`; throws ConfigError on a bad subnet. */
export function createSiteMap (sites: Record<string, string> = {}): SiteMap {
  const subnets: Subnet[] = []
  for (const [cidr, site] of Object.entries(sites)) {
    const [ip, bitsText] = cidr.split('/')
    const base = ipv4ToInt(ip)
    const bits = bitsText == null ? 32 : Number(bitsText)
    if (base == null || !Number.isInteger(bits) || bits < 0 || bits > 32) {
      throw new ConfigError(`sites: ${JSON.stringify(cidr)} is not an IPv4 subnet like 10.1.0.0/16`)
    }
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
    subnets.push({ base: (base & mask) >>> 0, mask, bits, site })
  }
  subnets.sort((a, b) => b.bits - a.bits)
  return {
    siteFor (address) {
      const ip = ipv4ToInt(address)
      if (ip == null) return undefined
      return subnets.find(s => ((ip & s.mask) >>> 0) === s.base)?.site
    }
  }
}
