/** The `trimswarm` command table: each command is loaded only when used. */
import { EXIT, flushStdio, reportError, runCommand, UsageError, type Command } from './cli-support.ts'
import { TRIMSWARM_VERSION } from '../protocol/version.ts'
import { AGENT_NODE_FLAGS } from '../peer-agent/constants.ts'
import { reexecWith } from './reexec.ts'

const root: Command = {
  summary: 'trimswarm',
  usage: `trimswarm — peer-assisted distribution of versioned workspace images

Usage: trimswarm <command> [options]   (every command takes --help)
       trimswarm --version [--json]     (also -V)

Images
  chunk IMAGE [--json]              split an image into content-addressed chunks
  manifest inspect FILE [--json]    show a (signed) manifest
  manifest build IMAGE ...          build an unsigned manifest from an image
Coordinator (server and admin)
  coordinator --data DIR            run the coordinator
  coordinator fsck --data DIR       check stored chunks, repair from image files
  publish IMAGE --image NAME --version V --coordinator URL --token-file F
  image list|retire|gc              versions and their state, retire, storage gc
  token create|list|revoke          machine tokens for agents
  policy set|show|list|delete       per-group policy
Agent (branch-office client)
  agent sync NAME[@VERSION] ...     bring a local image file to a version
  agent index --data DIR ...        build or refresh the host index
  agent run --config FILE           keep assigned images current, serve peers
Other
  demo                              coordinator + agents on 127.0.0.1, end to end
  (benchmarks: npm run bench, in a source checkout)

Environment
  TRIMSWARM_COORDINATOR             the coordinator URL, where --coordinator is not given
  TRIMSWARM_TOKEN_FILE              the token file, where --token-file is not given
  TRIMSWARM_DEBUG=1                 print stack traces of errors

Exit codes
  ${EXIT.ok}    done
  ${EXIT.failure}    failed (a version that exists already, input refused, interrupted, ...)
  ${EXIT.usage}    bad usage (unknown option, missing argument, bad value)
  ${EXIT.auth}    credentials refused, or no right to do this
  ${EXIT.notFound}    no such image, version, token or policy
  ${EXIT.unreachable}    coordinator unreachable or unavailable (try again later)
  ${EXIT.verification}    verification failed (signature, hash, pinned key, no intact copy)
  ${EXIT.localIo}    local file problem (missing or unreadable file, output refused, disk full)
  ${EXIT.dataDirTooNew}   the data dir was written by a newer trimswarm
  ${EXIT.internal}   a bug (printed with its stack trace)
  ${EXIT.locked}   the data dir is in use by another process (try again once it has finished)
  ${EXIT.config}   coordinator fsck: the config does not let it reach the chunks`,
  subcommands: {
    chunk: async () => (await import('./commands/chunk.ts')).default,
    manifest: async () => (await import('./commands/manifest.ts')).default,
    coordinator: async () => (await import('./commands/coordinator.ts')).default,
    publish: async () => (await import('./commands/publish.ts')).default,
    image: async () => (await import('./commands/image.ts')).default,
    token: async () => (await import('./commands/token.ts')).default,
    policy: async () => (await import('./commands/policy.ts')).default,
    agent: async () => (await import('./commands/agent.ts')).default,
    demo: async () => (await import('./commands/demo.ts')).default
  }
}

/** The `agent` subcommands, all of which run with AGENT_NODE_FLAGS. */
const AGENT_COMMANDS = ['sync', 'index', 'run']

/** `trimswarm --version`: the package version, and with --json the Node version too (for bug reports). */
function printVersion (json: boolean): number {
  process.stdout.write(json ? JSON.stringify({ version: TRIMSWARM_VERSION, node: process.versions.node }) + '\n' : `trimswarm ${TRIMSWARM_VERSION}\n`)
  return 0
}

// Exit as soon as the command is done and its output is out: libraries may still hold timers (libp2p's address
// manager keeps a 1 s one after stop), which cost every `agent sync` a second before it returned to its caller.
// Writes to a pipe are asynchronous on Linux, so what is still queued (a pipe holds 64 KiB) is flushed first.
const argv = process.argv.slice(2)
// every `agent` command re-executes itself with the agent's V8 flags as it starts (bin/commands/agent.ts); doing it
// here, before the command's modules are loaded, spares each run loading them twice (docs/BENCHMARKS.md `### agent CPU`)
if (argv[0] === 'agent' && AGENT_COMMANDS.includes(argv[1])) reexecWith({ nodeFlags: AGENT_NODE_FLAGS })
const code = argv[0] === '--version' || argv[0] === '-V'
  ? (argv.length === 1 || (argv.length === 2 && argv[1] === '--json')) ? printVersion(argv[1] === '--json')
      : reportError(new UsageError(`--version takes only --json\n\n${root.usage}`), 'trimswarm')
  : await runCommand(root, argv, 'trimswarm')
await flushStdio()
process.exit(code)
