/**
 * `npm run bench -- branch`: the branch-office benchmark for network teams.
 * How many WAN bytes and how long, for this image, this many clients, this
 * link: trimswarm next to a plain compressed HTTP download and casync, on a
 * real shaped network (namespaces, veth, tc). Code in bench/branch/; figures
 * and how to read them in docs/BENCHMARKS.md "## branch".
 */
import { BranchUsageError, options as branchOptions, parseBranchFlags } from './branch/flags.ts'
import { rerender, runBranch } from './branch/run.ts'
import {
  DEFAULT_AGENTS, DEFAULT_LAN_RATE, DEFAULT_OUT_DIR, DEFAULT_WAN_RATE, DEFAULT_WAN_RTT_MS, MAX_AGENTS
} from './branch/constants.ts'

/** One line for the list of benchmarks. */
export const summary = 'branch office: WAN bytes and time for N clients behind a shaped link; trimswarm vs HTTP, casync and BitTorrent'

/** Help text. */
export const usage = `Usage: npm run bench -- branch [--agents N] [--wan RATE] [--wan-rtt MS] [--lan RATE]
                              [--scenario cold|update|trim|all] [--images DIR] [--out DIR]

Builds a real network as root: namespace "hq" (coordinator, plain HTTP server)
and namespace "branch" (N clients, one process each) joined by a veth pair, the
WAN, shaped with tc tbf in both directions; a small relay in hq adds the round
trip (netem is not available here). Then, per scenario, every method with all
clients at once: a whole-image zstd download over HTTP, casync extract (if
installed), BitTorrent (aria2c clients, one aria2c seed and opentracker in hq,
if installed) and trimswarm agent sync, the CLI as it ships (scripts/build.sh,
built first into .cache/bench-cli/). WAN bytes are read from the veth's
interface counters. Everything started is stopped and removed on exit, Ctrl-C
and SIGTERM.

Scenarios
  cold     all clients at once, nothing local (v1 = base.img)
  update   v1 present from cold, v2 (next.img) published
  trim     like cold, with host folders indexed (--index, default /usr /etc /var/lib); HTTP and casync
           repeat their cold figures, BitTorrent downloads again

Options
  --agents N        clients in the branch (default ${DEFAULT_AGENTS}, at most ${MAX_AGENTS})
  --wan RATE        WAN rate each way, e.g. 50mbit, 10MB/s (default ${DEFAULT_WAN_RATE})
  --wan-rtt MS      round trip added on the WAN path, ms (default ${DEFAULT_WAN_RTT_MS}; 0 = none)
  --lan RATE        shape the branch LAN (its loopback) to RATE (default ${DEFAULT_LAN_RATE} = not shaped)
  --scenario S      cold, update, trim, a comma list, or all (default all)
  --images DIR      folder with base.img and next.img (default: .cache/corpus, /work/corpus, or built there;
                    build them with ../shared/corpus/make-images.sh)
  --out DIR         where report.md, report.json and the SVG charts go (default ${DEFAULT_OUT_DIR})
  --index DIR       host folder indexed in the trim scenario (repeatable)
  --methods LIST    subset of http,casync,bittorrent,trimswarm (default all)
  --proxy           no namespaces (e.g. not root): a shaping relay on 127.0.0.1 instead
  --keep            keep the work folder (coordinator and agent data) for inspection
  --agent-logs      trimswarm agents log every step (--verbose, JSON lines with times) into
                    OUT/agent-logs/SCENARIO-N.jsonl, each file starting with the spawn time
  --from-source     run the checkout's TypeScript sources instead of the built CLI
  --rerender DIR    only rebuild DIR/report.md and the charts from DIR/report.json

Exit codes: 0 every client finished and verified, 1 a client failed or an error,
2 bad usage (unknown scenario, bad rate, missing images, not root without --proxy).`

/** Its options. */
export const options = branchOptions

/** Runs the benchmark. */
export async function run (argv: string[]): Promise<number> {
  try {
    const config = parseBranchFlags(argv, { outDir: DEFAULT_OUT_DIR })
    if (config.rerender != null) {
      rerender(config.rerender)
      return 0
    }
    return await runBranch(config)
  } catch (err) {
    if (err instanceof BranchUsageError) {
      process.stderr.write(`bench branch: ${err.message}\n`)
      return 2
    }
    throw err
  }
}
