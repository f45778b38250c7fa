/** Human bandwidth rates ("20mbit", "5MB/s", "750kbit") to bytes per second, shared by both CLIs. */
import { ValidationError } from './errors.ts'

const UNITS: Record<string, number> = {
  bit: 1 / 8, kbit: 1e3 / 8, mbit: 1e6 / 8, gbit: 1e9 / 8,
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3
}

/** Parses a rate; a bare number is bytes per second; "0" or "unlimited" is 0 (no cap). */
export function parseRate (text: string): number {
  const t = text.trim().toLowerCase()
  if (t === 'unlimited' || t === '0') return 0
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)(?:\/s|ps)?$/.exec(t)
  if (m == null || (m[2] !== '' && UNITS[m[2]] == null)) {
    throw new ValidationError(`cannot parse rate ${JSON.stringify(text)}: use e.g. 20mbit, 5MB/s, 750kbit, 1gbit or unlimited`)
  }
  const value = Number(m[1]) * (m[2] === '' ? 1 : UNITS[m[2]])
  if (!Number.isFinite(value) || value < 1) throw new ValidationError(`rate ${JSON.stringify(text)} is too small`)
  return Math.round(value)
}

/** Formats bytes per second as megabits, for people. */
export function formatRate (bytesPerSecond: number): string {
  return bytesPerSecond === 0 ? 'unlimited' : `${(bytesPerSecond * 8 / 1e6).toFixed(bytesPerSecond < 125_000 ? 3 : 1)}mbit`
}
