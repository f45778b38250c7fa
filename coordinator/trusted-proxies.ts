/**
 * The config's `trustedProxies`: the addresses (IPs or CIDRs, IPv4 or IPv6)
 * of TLS-terminating reverse proxies in front of the coordinator. Only a
 * request whose TCP peer is one of them may say, in X-Forwarded-For and
 * X-Forwarded-Proto, who the client is and that it came over HTTPS; from any
 * other peer those headers are ignored, since any client can send them.
 */
import { BlockList, isIP } from 'node:net'
import type { Context } from 'hono'
import { getConnInfo } from '@hono/node-server/conninfo'
import { ConfigError } from './errors.ts'

/** Answers for one request, given the trusted proxies. */
export interface TrustedProxies {
  /** Whether `address` (the TCP peer) is a trusted proxy. */
  isTrusted: (address: string) => boolean
  /** The client's address: the TCP peer, or, behind trusted proxies, the nearest untrusted address in X-Forwarded-For. */
  clientAddress: (c: Context) => string
  /** Whether the client reached us over HTTPS: our own TLS, or X-Forwarded-Proto: https from a trusted proxy. */
  isHttps: (c: Context) => boolean
}

/** The TCP peer of a request ('in-process' for app.request(), which has no socket). */
export function peerAddress (c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown'
  } catch {
    return 'in-process'
  }
}

const bare = (ip: string): string => ip.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1')

/** Parses `trustedProxies` (e.g. `["10.0.0.5", "192.168.1.0/24", "fd00::/8"]`); throws ConfigError on a bad entry. */
export function createTrustedProxies (list: readonly string[] = []): TrustedProxies {
  const blocks = new BlockList()
  for (const entry of list) {
    const [ip, bitsText, extra] = entry.split('/')
    const family = isIP(ip)
    const max = family === 4 ? 32 : 128
    const bits = bitsText == null ? max : Number(bitsText)
    if (family === 0 || extra != null || !Number.isInteger(bits) || bits < 0 || bits > max || (bitsText != null && !/^\d+$/.test(bitsText))) {
      throw new ConfigError(`trustedProxies: ${JSON.stringify(entry)} is not an IP address or CIDR like 10.0.0.5, 10.0.0.0/24 or fd00::/8`)
    }
    blocks.addSubnet(ip, bits, family === 4 ? 'ipv4' : 'ipv6')
  }
  const isTrusted = (address: string): boolean => {
    if (list.length === 0) return false
    const ip = bare(address)
    const family = isIP(ip)
    return family !== 0 && blocks.check(ip, family === 4 ? 'ipv4' : 'ipv6')
  }
  return {
    isTrusted,
    clientAddress (c) {
      let address = bare(peerAddress(c))
      if (!isTrusted(address)) return address
      // right to left: each trusted proxy appended the address it saw; the first untrusted one is the client
      const hops = (c.req.header('x-forwarded-for') ?? '').split(',').map(s => bare(s.trim())).filter(s => s !== '')
      while (hops.length > 0 && isTrusted(address)) {
        const hop = hops.pop() as string
        if (isIP(hop) === 0) break
        address = hop
      }
      return address
    },
    isHttps (c) {
      if (new URL(c.req.url).protocol === 'https:') return true
      if (!isTrusted(peerAddress(c))) return false
      const proto = (c.req.header('x-forwarded-proto') ?? '').split(',')[0].trim().toLowerCase()
      return proto === 'https'
    }
  }
}
