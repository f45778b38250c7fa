/**
 * Progress for people while the benchmark runs: one line rewritten in place
 * on a TTY, plain lines (at most one every few seconds) otherwise.
 */

/** The progress display. */
export interface Progress {
  /** The current state (replaces the previous one). */
  update: (text: string) => void
  /** A line that stays. */
  line: (text: string) => void
  /** Ends the in-place line, if any. */
  done: () => void
}

/** Seconds between plain progress lines when the output is not a TTY. */
const PLAIN_EVERY_MS = 5000

/** Creates a progress display on a stream (stderr, so stdout stays the result). */
export function createProgress (stream: NodeJS.WriteStream | { write: (s: string) => unknown, isTTY?: boolean, columns?: number }): Progress {
  const tty = stream.isTTY === true
  let open = false
  let lastPlain = 0
  return {
    update (text) {
      if (tty) {
        const width = Math.max(20, ((stream as { columns?: number }).columns ?? 100) - 1)
        stream.write(`\r\x1b[2K${text.slice(0, width)}`)
        open = true
      } else if (Date.now() - lastPlain >= PLAIN_EVERY_MS) {
        lastPlain = Date.now()
        stream.write(text + '\n')
      }
    },
    line (text) {
      if (open) { stream.write('\r\x1b[2K'); open = false }
      stream.write(text + '\n')
    },
    done () {
      if (open) { stream.write('\n'); open = false }
      lastPlain = 0
    }
  }
}
