/**
 * Human bandwidth rates ("20mbit", "5MB/s", "750kbit") to bytes per second and back, shared by
 * the CLIs, the daemon config and the console. Units are explicit and case-exact: a bare number
 * or "Mb" could mean bits or bytes (a factor of 8), so both are refused with a hint instead of
 * being guessed.
 */
import { ValidationError } from './errors.ts'

const BITS: Record<string, number> = { bit: 1 / 8, kbit: 1e3 / 8, mbit: 1e6 / 8, gbit: 1e9 / 8 }

/** Bytes per second of one unit; bit units may carry "/s", byte units must. */
const UNITS: Record<string, number> = {
  ...BITS,
  ...Object.fromEntries(Object.entries(BITS).map(([u, v]) => [`${u}/s`, v])),
  'B/s': 1,
  'kB/s': 1e3,
  'KB/s': 1e3,
  'MB/s': 1e6,
  'GB/s': 1e9,
  'KiB/s': 1024,
  'MiB/s': 1024 ** 2,
  'GiB/s': 1024 ** 3
}

const EXAMPLES = 'e.g. 20mbit (megabits per second), 5MB/s (megabytes per second), 750kbit, 1gbit, 10MiB/s, or unlimited'

/** The unit names parseRate accepts, for hints. */
const RATE_UNITS = Object.keys(UNITS).filter(u => !u.endsWith('bit/s'))

/** Parses a rate to bytes per second; "0" or "unlimited" is 0 (no cap). */
export function parseRate (text: string): number {
  const t = text.trim()
  if (t === 'unlimited' || /^0+(\.0*)?$/.test(t)) return 0
  const m = /^(\d+(?:\.\d+)?)\s*(\S*)$/.exec(t)
  if (m == null) throw new ValidationError(`cannot parse rate ${JSON.stringify(text)}: use ${EXAMPLES}`)
  const [, number, rawUnit] = m
  if (rawUnit === '') {
    throw new ValidationError(`rate ${JSON.stringify(text)} has no unit: write ${number}mbit ` +
      `for megabits or ${number}MB/s for megabytes per second (or unlimited)`)
  }
  const perUnit = UNITS[rawUnit]
  if (perUnit == null) throw new ValidationError(`unknown rate unit ${JSON.stringify(rawUnit)} in ${JSON.stringify(text)}: ${unitHint(number, rawUnit)}`)
  const value = Number(number) * perUnit
  if (!Number.isFinite(value) || value < 1) throw new ValidationError(`rate ${JSON.stringify(text)} is below 1 byte per second`)
  if (value > Number.MAX_SAFE_INTEGER) throw new ValidationError(`rate ${JSON.stringify(text)} is too large`)
  return Math.round(value)
}

/** What to write instead of an unknown unit: bits and bytes spelled so they cannot be mistaken. */
function unitHint (number: string, unit: string): string {
  const prefix = /^([kKmMgG])i?(?:b|bit|bps|byte|bytes)?(?:\/s|ps)?$/i.exec(unit)?.[1]
  if (prefix == null) return `units are case-exact: ${RATE_UNITS.join(', ')} (${EXAMPLES})`
  const p = prefix.toLowerCase()
  const bytePrefix = p === 'k' ? 'K' : p.toUpperCase()
  return `write ${number}${p}bit for ${p === 'k' ? 'kilo' : p === 'm' ? 'mega' : 'giga'}bits ` +
    `or ${number}${bytePrefix}B/s for ${p === 'k' ? 'kilo' : p === 'm' ? 'mega' : 'giga'}bytes per second (units are case-exact)`
}

const BIT_UNITS: Array<[string, number]> = [['gbit', 1e9], ['mbit', 1e6], ['kbit', 1e3], ['bit', 1]]

/** Formats bytes per second for people in bits, e.g. "20 mbit", "2.5 mbit", "160 bit"; 0 is "unlimited". */
export function formatRate (bytesPerSecond: number): string {
  if (bytesPerSecond === 0) return 'unlimited'
  const bits = bytesPerSecond * 8
  const [unit, size] = BIT_UNITS.find(([, size]) => bits >= size) ?? BIT_UNITS[BIT_UNITS.length - 1]
  // three significant digits, no trailing zeros: enough to tell caps apart, never "0.000mbit"
  return `${Number((bits / size).toPrecision(3))} ${unit}`
}
