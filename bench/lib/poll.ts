/**
 * Waiting for something the coordinator builds in the background after a publish (segments,
 * a delta pack) before a benchmark times anything: one poll loop for every bench.
 */
import { setTimeout as sleep } from 'node:timers/promises'

/** How a poll asks, and how long it waits. */
export interface PollOptions {
  /** Between two asks (ms). */
  everyMs: number
  /** Give up after this long (ms). */
  timeoutMs: number
  /** Told the seconds waited so far before each sleep (a progress line). */
  onWait?: (seconds: number) => void
}

/** What a poll ended with: the probe's answer, or undefined when it timed out; and the seconds it waited. */
export interface PollResult<T> {
  value: T | undefined
  seconds: number
}

/**
 * Calls `probe` until it answers something other than undefined, or `timeoutMs` has passed. A probe
 * that throws ends the poll with its error: one for which asking again is right (a busy coordinator)
 * catches it and answers undefined.
 */
export async function pollUntil<T> (probe: () => Promise<T | undefined>, options: PollOptions): Promise<PollResult<T>> {
  const started = performance.now()
  const seconds = (): number => (performance.now() - started) / 1000
  for (;;) {
    const value = await probe()
    if (value !== undefined) return { value, seconds: seconds() }
    if (seconds() * 1000 >= options.timeoutMs) return { value: undefined, seconds: seconds() }
    options.onWait?.(seconds())
    await sleep(options.everyMs)
  }
}
