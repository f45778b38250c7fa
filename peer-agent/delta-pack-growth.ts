/**
 * A delta pack file read while it is being downloaded (delta-pack-source.ts
 * applies the pack as it arrives instead of after the whole download): the
 * download says how many bytes at the start of the file are written and
 * valid, and when a retry had to start the file afresh (the reader then
 * starts over: what it offered was verified block by block, so nothing wrong
 * was kept, only decoding is repeated).
 */
import { open } from 'node:fs/promises'
import { PackRestartedError } from './errors.ts'

/** How far the pack file is written; the download moves it, the reader waits on it. */
export interface PackGrowth {
  /** Bytes at the start of the file that are written and belong to the pack being downloaded. */
  readonly bytes: number
  /** Incremented whenever the valid bytes shrink (the file was started afresh). */
  readonly generation: number
  readonly done: boolean
  /** Why the download gave up, once it did. */
  readonly failed: unknown
  /** A download (re)starts with `bytes` valid bytes already in the file (0: it truncates the file). */
  start: (bytes: number) => void
  /** `n` more bytes were written. */
  grew: (n: number) => void
  /** The whole pack is in the file. */
  finish: () => void
  fail: (err: unknown) => void
  /** Resolves at the next change of any of the above. */
  changed: () => Promise<void>
}

/** A growth record at 0 bytes, not started. */
export function createPackGrowth (): PackGrowth {
  let wake: () => void = () => {}
  let next = new Promise<void>(resolve => { wake = resolve })
  const state = { bytes: 0, generation: 0, done: false, failed: undefined as unknown }
  const notify = (): void => {
    const resolve = wake
    next = new Promise<void>(r => { wake = r })
    resolve()
  }
  return {
    get bytes () { return state.bytes },
    get generation () { return state.generation },
    get done () { return state.done },
    get failed () { return state.failed },
    start (bytes) {
      if (bytes < state.bytes) state.generation++
      state.bytes = bytes
      notify()
    },
    grew (n) { state.bytes += n; notify() },
    finish () { state.done = true; notify() },
    fail (err) { state.failed = err ?? new Error('delta pack download failed'); notify() },
    changed: async () => { await next }
  }
}

/** Waits until at least `bytes` are written, the download ended (done or failed) or started over. */
export async function waitForBytes (growth: PackGrowth, bytes: number): Promise<void> {
  const generation = growth.generation
  while (growth.bytes < bytes && !growth.done && growth.failed == null && growth.generation === generation) await growth.changed()
}

/**
 * The pack file's bytes from `start` as they are written, in reads of at most `pieceBytes`, each into
 * a buffer of its own; ends when the download is done, throws its error when it failed, and
 * PackRestartedError when it started the file afresh (`generation` is the one the caller began with).
 */
export async function * readGrowing (path: string, start: number, growth: PackGrowth, generation: number, pieceBytes: number): AsyncGenerator<Uint8Array> {
  const fh = await open(path, 'r')
  try {
    let at = start
    for (;;) {
      if (growth.generation !== generation) throw new PackRestartedError('the delta pack download started over')
      if (at < growth.bytes) {
        const piece = Buffer.allocUnsafe(Math.min(pieceBytes, growth.bytes - at))
        const { bytesRead } = await fh.read(piece, 0, piece.length, at)
        // shorter than written: truncated by a restart under us
        if (bytesRead === 0) throw new PackRestartedError('the delta pack file is shorter than written')
        at += bytesRead
        yield piece.subarray(0, bytesRead)
      } else if (growth.failed != null) {
        throw growth.failed
      } else if (growth.done) {
        return
      } else {
        await growth.changed()
      }
    }
  } finally {
    await fh.close()
  }
}
