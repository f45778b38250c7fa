/**
 * Which reverse proxies the coordinator believes (config `trustedProxies`):
 * the one place that decides whether `X-Forwarded-For` (and, for the
 * console's Secure cookies, `X-Forwarded-Proto`) of a request may be taken
 * as true. A header from any other peer is the client's own word and is
 * ignored, so a client cannot pick the IP its log lines and rate limits use.
 */
import { BlockList, isIP } from 'node:net'
import { ConfigError } from './errors.ts'

/** The parsed `trustedProxies` list. */
export interface TrustedProxies {
  /** Whether `addr` (the socket's remote address) is one of the configured proxies. */
  isTrusted: (addr: string) => boolean
  /**
   * The client's IP: `remoteAddr` when it is not a trusted proxy; else the
   * X-Forwarded-For hops walked from the right, skipping trusted proxies, up
   * to the first hop that is not one (a client can prepend anything, so only
   * what trusted proxies appended counts).
   */
  clientIp: (remoteAddr: string, xff: string | undefined) => string
  /** Whether a trusted proxy at `remoteAddr` says the client came over HTTPS (`X-Forwarded-Proto: https`, its first value). */
  forwardedHttps: (remoteAddr: string, proto: string | undefined) => boolean
}

/** `::ffff:10.0.0.1` (an IPv4 client on a dual-stack socket) is 10.0.0.1. */
function plain (addr: string): string {
  const a = addr.trim()
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(a) ? a.slice(7) : a
}

function familyOf (addr: string): 'ipv4' | 'ipv6' | undefined {
  const v = isIP(addr)
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : undefined
}

/** Builds the matcher; throws ConfigError naming a bad entry (an IP or IP/prefix). */
export function createTrustedProxies (list: readonly string[] = []): TrustedProxies {
  const blocks = new BlockList()
  for (const entry of list) {
    const [ip, prefix, extra] = entry.split('/')
    const family = familyOf(plain(ip))
    const bits = prefix == null ? undefined : Number(prefix)
    const max = family === 'ipv4' ? 32 : 128
    if (family == null || extra != null || (bits != null && (!/^\d{1,3}$/.test(prefix) || bits > max))) {
      throw new ConfigError(`trustedProxies: ${JSON.stringify(entry)} is not an IP address or IP/prefix (e.g. 10.0.0.5, 10.0.0.0/8, fd00::/8)`)
    }
    if (bits == null) blocks.addAddress(plain(ip), family)
    else blocks.addSubnet(plain(ip), bits, family)
  }
  const isTrusted = (addr: string): boolean => {
    const a = plain(addr)
    const family = familyOf(a)
    return family != null && list.length > 0 && blocks.check(a, family)
  }
  return {
    isTrusted,
    clientIp (remoteAddr, xff) {
      let ip = plain(remoteAddr)
      if (xff == null || !isTrusted(ip)) return ip
      const hops = xff.split(',').map(h => plain(h)).filter(h => h !== '')
      while (hops.length > 0 && isTrusted(ip)) {
        const next = hops.pop()!
        // a hop that is not an IP is garbage from a client: keep the last proxy we trust
        if (familyOf(next) == null) break
        ip = next
      }
      return ip
    },
    forwardedHttps (remoteAddr, proto) {
      return proto != null && isTrusted(remoteAddr) && proto.split(',')[0].trim().toLowerCase() === 'https'
    }
  }
}
