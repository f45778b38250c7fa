/**
 * Every command's --help, as the real CLI prints it: values with units, never the name of
 * a constant; and the top-level help lists every command and subcommand there is.
 */
import { execFile } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { CLI } from '../peer-agent/harness.ts'

const exec = promisify(execFile)
const COMMANDS_DIR = join(import.meta.dirname, '..', '..', 'bin', 'commands')

/** Environment variables a help text may name (they look like constants but are what the user sets). */
const ENVIRONMENT = /^(TRIMSWARM_[A-Z_]+|NODE_EXTRA_CA_CERTS|NODE_COMPILE_CACHE|NODE_DISABLE_COMPILE_CACHE|GLIBC_TUNABLES|XDG_CACHE_HOME)$/

/** Words that look like a constant's name: upper case with an underscore (RETRY_ATTEMPTS, DEFAULT_SITE). */
export function constantNames (text: string): string[] {
  return [...text.matchAll(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g)].map(m => m[0]).filter(w => !ENVIRONMENT.test(w))
}

/** The part of a CLI command (bin/cli-support.ts) this test walks. */
interface Command { subcommands?: Record<string, () => Promise<Command>> }

/** Every command path ("agent sync", "chunk", ...) of the command modules, with their subcommands. */
async function commandPaths (): Promise<Array<{ path: string, subcommands: string[] }>> {
  const out: Array<{ path: string, subcommands: string[] }> = []
  const walk = async (path: string, cmd: Command): Promise<void> => {
    const subs = Object.keys(cmd.subcommands ?? {})
    out.push({ path, subcommands: subs })
    for (const s of subs) await walk(`${path} ${s}`, await cmd.subcommands![s]())
  }
  for (const file of (await readdir(COMMANDS_DIR)).filter(f => f.endsWith('.ts'))) {
    const cmd = (await import(join(COMMANDS_DIR, file))).default as Command
    await walk(file.replace(/\.ts$/, ''), cmd)
  }
  return out
}

async function help (path: string): Promise<string> {
  const { stdout } = await exec(process.execPath, [CLI, ...path.split(' ').filter(w => w !== ''), '--help'], { env: { ...process.env, TRIMSWARM_NO_REEXEC: '1' } })
  return stdout
}

describe('help texts', () => {
  it('finds constant names (the check itself)', () => {
    expect(constantNames('(default RETRY_ATTEMPTS) or DEFAULT_SITE, TRIMSWARM_TOKEN_FILE, NODE_EXTRA_CA_CERTS, HH:MM, URL')).toEqual(['RETRY_ATTEMPTS', 'DEFAULT_SITE'])
  })

  it('every command\'s --help shows values, never a constant name', async () => {
    const paths = ['', ...(await commandPaths()).map(c => c.path)]
    const texts = await Promise.all(paths.map(async p => ({ path: p, text: await help(p) })))
    for (const { path, text } of texts) {
      expect(text.length, path).toBeGreaterThan(40)
      expect(constantNames(text), `trimswarm ${path} --help`).toEqual([])
    }
    const sync = texts.find(t => t.path === 'agent sync')!.text
    expect(sync).toMatch(/default 6 tries/)
    expect(sync).toMatch(/default 500 ms/)
    expect(sync).toMatch(/default 120 s/)
  }, 120_000)

  it('the top-level help lists every command and subcommand', async () => {
    const top = await help('')
    for (const { path, subcommands } of await commandPaths()) {
      if (path.includes(' ')) continue
      expect(top, path).toMatch(new RegExp(`^  ${path}\\b`, 'm'))
      for (const s of subcommands) {
        // "agent sync ..." on its own line, or "token create|list|revoke"
        expect(top, `${path} ${s}`).toMatch(new RegExp(`^  ${path} (\\S+\\|)*${s}\\b`, 'm'))
      }
    }
    // a command that takes its mode as an argument
    expect(top).toMatch(/^ {2}coordinator fsck\b/m)
  })
})
