/** The `trimswarm` command table: each command is loaded only when used. */
import { flushStdio, runCommand, type Command } from './cli-support.ts'

const root: Command = {
  summary: 'trimswarm',
  usage: `trimswarm — peer-assisted distribution of versioned workspace images

Usage: trimswarm <command> [options]   (every command takes --help)

Images
  chunk IMAGE [--json]              split an image into content-addressed chunks
  manifest inspect FILE [--json]    show a (signed) manifest
Coordinator (server and admin)
  coordinator --data DIR            run the coordinator
  publish IMAGE --image NAME --version V --coordinator URL --token-file F
  image list|retire|gc              versions and their state, retire, storage gc
  token create|list|revoke          machine tokens for agents
  policy set|show|list              per-group policy
Agent (branch-office client)
  agent sync NAME[@VERSION] ...     bring a local image file to a version
  agent run --config FILE           keep assigned images current, serve peers
Other
  demo                              coordinator + agents on 127.0.0.1, end to end
  bench ...                         benchmarks (also: npm run bench)`,
  subcommands: {
    chunk: async () => (await import('./commands/chunk.ts')).default,
    manifest: async () => (await import('./commands/manifest.ts')).default,
    coordinator: async () => (await import('./commands/coordinator.ts')).default,
    publish: async () => (await import('./commands/publish.ts')).default,
    image: async () => (await import('./commands/image.ts')).default,
    token: async () => (await import('./commands/token.ts')).default,
    policy: async () => (await import('./commands/policy.ts')).default,
    agent: async () => (await import('./commands/agent.ts')).default,
    demo: async () => (await import('./commands/demo.ts')).default,
    bench: async () => (await import('../bench/cli.ts')).default
  }
}

// Exit as soon as the command is done and its output is out: libraries may still hold timers (libp2p's address
// manager keeps a 1 s one after stop), which cost every `agent sync` a second before it returned to its caller.
// Writes to a pipe are asynchronous on Linux, so what is still queued (a pipe holds 64 KiB) is flushed first.
const code = await runCommand(root, process.argv.slice(2), 'trimswarm')
await flushStdio()
process.exit(code)
