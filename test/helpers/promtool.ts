/** `promtool check metrics` (Debian package prometheus) on an exposition text: its exit code and every complaint. */
import { spawn } from 'node:child_process'

/** Runs promtool on `text`; `output` is what it printed (empty when it has nothing to say). */
export async function promtoolCheck (text: string): Promise<{ code: number | null, output: string }> {
  const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { output += d })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { output += d })
  const done = new Promise<number | null>((resolve, reject) => { child.once('error', reject); child.once('close', resolve) })
  child.stdin.end(text)
  return { code: await done, output: output.trim() }
}

/** The value of one series (`name{label="v",...}` exactly as exposed) in an exposition text; NaN when absent. */
export function sampleValue (text: string, series: string): number {
  const escaped = series.replace(/[{}[\]().*+?^$|\\]/g, '\\$&')
  return Number(new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
}
