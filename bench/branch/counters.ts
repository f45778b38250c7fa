/**
 * Interface byte counters: parsing /proc/<pid>/net/dev (the counters of the
 * network namespace that process lives in, readable from outside it without
 * entering it) and the sampling math. Pure.
 */

/** Bytes received and sent by one interface since it was created. */
export interface IfaceCounters {
  rx: number
  tx: number
  rxPackets: number
  txPackets: number
}

/** Parses the text of /proc/net/dev into counters per interface name. */
export function parseNetDev (text: string): Map<string, IfaceCounters> {
  const out = new Map<string, IfaceCounters>()
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':')
    if (colon < 0) continue
    const name = line.slice(0, colon).trim()
    const fields = line.slice(colon + 1).trim().split(/\s+/)
    // Receive: bytes packets errs drop fifo frame compressed multicast; Transmit: bytes ...
    if (name === '' || fields.length < 16) continue
    const [rx, rxPackets, tx, txPackets] = [fields[0], fields[1], fields[8], fields[9]].map(Number)
    if (![rx, rxPackets, tx, txPackets].every(Number.isFinite)) continue
    out.set(name, { rx, tx, rxPackets, txPackets })
  }
  return out
}

/** One sample of the WAN and LAN counters at a time (ms since some origin). */
export interface Sample {
  t: number
  /** Bytes hq -> branch so far on the WAN link. */
  wanDown: number
  /** Bytes branch -> hq so far on the WAN link. */
  wanUp: number
  /** Bytes over the branch LAN so far. */
  lan: number
  /** Packets hq -> branch so far (0 when unknown, e.g. the proxy). */
  wanDownPackets: number
  /** Packets branch -> hq so far. */
  wanUpPackets: number
}

/**
 * Header bytes per packet on the WAN veth as the kernel counts them:
 * Ethernet 14 + IPv4 20 + TCP 20 + TCP timestamps option 12. Segmentation
 * offload is limited to one MTU on the veth, so every packet is counted with its headers.
 */
export const HEADER_BYTES_PER_PACKET = 66

/** Difference of two samples (end - start), never negative. */
export function sampleDelta (start: Sample, end: Sample): { wanDown: number, wanUp: number, wan: number, lan: number, wanDownPackets: number, wanUpPackets: number, seconds: number } {
  const d = (a: number, b: number): number => Math.max(0, b - a)
  const wanDown = d(start.wanDown, end.wanDown)
  const wanUp = d(start.wanUp, end.wanUp)
  return {
    wanDown,
    wanUp,
    wan: wanDown + wanUp,
    lan: d(start.lan, end.lan),
    wanDownPackets: d(start.wanDownPackets, end.wanDownPackets),
    wanUpPackets: d(start.wanUpPackets, end.wanUpPackets),
    seconds: Math.max(0, end.t - start.t) / 1000
  }
}

/** Payload bytes in `bytes` carried by `packets` TCP packets (headers removed), never negative. */
export function payloadBytes (bytes: number, packets: number): number {
  return Math.max(0, bytes - packets * HEADER_BYTES_PER_PACKET)
}

/** One point of a throughput series: seconds since the series' start, bits per second over the interval ending there. */
export interface RatePoint {
  t: number
  bps: number
}

/**
 * WAN throughput (both directions) between consecutive samples, in bits per
 * second, with time relative to the first sample. Intervals of zero length are skipped.
 */
export function throughputSeries (samples: Sample[]): RatePoint[] {
  const out: RatePoint[] = []
  if (samples.length === 0) return out
  const t0 = samples[0].t
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]
    const b = samples[i]
    const dt = (b.t - a.t) / 1000
    if (dt <= 0) continue
    const bytes = Math.max(0, b.wanDown - a.wanDown) + Math.max(0, b.wanUp - a.wanUp)
    out.push({ t: (b.t - t0) / 1000, bps: bytes * 8 / dt })
  }
  return out
}

/** Relative difference |a - b| / b (b the reference); Infinity when b is 0 and a is not. */
export function relativeDifference (a: number, reference: number): number {
  if (reference === 0) return a === 0 ? 0 : Infinity
  return Math.abs(a - reference) / reference
}
