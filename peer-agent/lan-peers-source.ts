/**
 * The "peers" block source of a sync (image-sync's extraSources): joins the version's swarm,
 * decides who takes the site's delta pack (lan-plan.ts), runs a swarm session for the
 * unverified chunks and, round by round, fetches from the origin the chunks the claim rule
 * gives this agent (session.originChunks): with segments, whole segments (lan-round-plan.ts),
 * and the missing blocks they leave in one block batch; two rounds in flight.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { bitmapHas, bitmapSet } from '../protocol/block-exchange.ts'
import { BLOCK_SIZE } from '../protocol/constants.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { chunkCid } from '../protocol/block-id.ts'
import type { AbortOptions } from '../utils/interface.ts'
import type { BlockSource, SyncContext } from './block-source.ts'
import { LAN_LEADER_STALL_MS, LAN_ORIGIN_ROUNDS_IN_FLIGHT, LAN_PACK_WAIT_MS, LAN_WAIT_MS } from './constants.ts'
import type { CoordinatorClient } from './coordinator-client.ts'
import type { AgentLogger } from './interface.ts'
import { refreshPeers, type Joined } from './lan-join.ts'
import { claimedMissingBlocks, claimRoundChunks, createLeaderWatch, siteLeader } from './lan-plan.ts'
import { planOriginRound, roundSegments, segmentLayout, type OriginRound, type RoundLimits, type SegmentLayout } from './lan-round-plan.ts'
import { createBlockBatchSource, fetchChunkFromOrigin } from './origin-sources.ts'
import { isDiskFull } from './errors.ts'
import { createSegmentSource, type SegmentSource } from './segment-source.ts'
import type { SegmentTable } from '../protocol/segments.ts'
import { plural } from './progress-reporter.ts'
import { peerIdOf, type ServedVersion, type Swarm, type SwarmSession } from './swarm/index.ts'

/**
 * The blocks of chunk `chunk` the sync lacks as a WANT_BLOCKS mask, when it holds some (a trim: the
 * host's files gave part of the chunk); undefined when it lacks all or none of them. A block a host
 * read beside the session will give is asked for too: the chunk then completes with what the peer
 * sends, not only once the reads are over (isHeld, not the view's isMissing).
 */
export function lackingBlocks (ctx: SyncContext, chunk: number): Uint8Array | undefined {
  const { firstBlock, length } = ctx.manifest.chunks[chunk]
  const blocks = length / BLOCK_SIZE
  const mask = new Uint8Array(Math.ceil(blocks / 8))
  let lacking = 0
  for (let k = 0; k < blocks; k++) if (!ctx.isHeld(firstBlock + k)) { bitmapSet(mask, k); lacking++ }
  return lacking === 0 || lacking === blocks ? undefined : mask
}

/**
 * Offers the blocks a peer sent for `mask` (in order): each checked against its prefix and written,
 * the chunk they complete verified whole (sync-context.ts). `bad` when one does not match.
 */
export function offerChunkBlocks (ctx: SyncContext, chunk: number, mask: Uint8Array, blocks: Uint8Array): 'verified' | 'bad' | 'unverified' {
  const { firstBlock, length } = ctx.manifest.chunks[chunk]
  let at = 0
  for (let k = 0; k < length / BLOCK_SIZE; k++) {
    if (!bitmapHas(mask, k)) continue
    if (!ctx.offerBlock(firstBlock + k, blocks.subarray(at, at + BLOCK_SIZE), 'peers')) return 'bad'
    at += BLOCK_SIZE
  }
  return ctx.isVerified(chunk) ? 'verified' : 'unverified'
}

/** The sync being served: its manifest, its verified chunks, and the session fetching for it. */
export interface ServedSync {
  manifest: Manifest
  isVerified: (i: number) => boolean
  served: ServedVersion
  session?: SwarmSession
}

/** What the peers source uses of LAN sharing. */
export interface PeersSourceComponents {
  client: CoordinatorClient
  logger: AgentLogger
  onBanned?: (info: { image: string, version: string, peerId: string, reason: string }) => void
  /** The node and the sync it serves, once the temp file's serving is set up. */
  serving: () => Promise<{ swarm: Swarm, sync: ServedSync } | undefined>
  join: (s: Swarm, image: string, version: string, options: AbortOptions) => Promise<Joined | undefined>
  /** Peers that exchanged chunks of a version with us (what --linger waits for). */
  sessionPeers: Set<string>
  /** This agent takes the site's delta pack: the listed peers wait for its chunks. */
  tookPack: (waiters: Set<string>) => void
}

const idsOf = (addrs: readonly string[]): string[] => addrs.map(peerIdOf).filter(id => id != null)

/** `ctx` narrowed to `blocks`: what a source given it fetches (missing() is what it is asked for). */
function narrowed (ctx: SyncContext, blocks: readonly number[]): SyncContext {
  return {
    ...ctx,
    missing: () => blocks.filter(b => ctx.isMissing(b)),
    missingCount: () => blocks.filter(b => ctx.isMissing(b)).length
  }
}

/**
 * Fetches `chunks` from the origin: their missing blocks in one batch (after the segments the
 * cost rule takes for them), whole chunks for what then fails.
 */
async function fetchClaimed (
  components: PeersSourceComponents, ctx: SyncContext, chunks: number[], isVerified: (i: number) => boolean,
  segments: SegmentSource, options: AbortOptions
): Promise<void> {
  const { client, logger } = components
  const m = ctx.manifest
  const blocks = claimedMissingBlocks(m, chunks, ctx.isMissing)
  if (blocks.length > 0) {
    await createBlockBatchSource({ client, logger }, { image: m.name, version: m.version, segments }).fill(narrowed(ctx, blocks), options)
  }
  // a chunk that still does not verify (a bad block from the origin): fetched whole; one still waiting for host reads is judged after them
  for (const ci of chunks) {
    if (isVerified(ci) || ctx.localPending?.(ci) === true) continue
    const fetched = await fetchChunkFromOrigin(client, ctx, ci, options)
    // the coordinator's copy is damaged or gone: a peer may have it; the sync asks again at its end
    if (fetched !== true) logger.warn(`chunk ${ci} (${chunkCid(m.chunks[ci].digest).toString()}): the coordinator cannot serve it (${fetched.message})`)
  }
}

/**
 * What this agent does with the peers listed for the version: `alone` (an update with nobody else: the
 * origin's delta pack), `pack` (the site's pack leader: it serves what it applies), else a session.
 */
interface Listed {
  addrs: string[]
  role: 'alone' | 'pack' | 'session'
  /** In an update, the site's pack agent the others wait for. */
  packLeader?: string
}

/** The peers listed for the version and this agent's role (no side effects: the fill acts on them). */
async function listPeers (
  components: PeersSourceComponents, node: Swarm, joined: Joined, update: boolean, options: AbortOptions
): Promise<Listed> {
  const { logger } = components
  let addrs = await refreshPeers(joined, logger, options)
  // a delta pack pays only once per site: with peers it would be pulled whole by each. Agents
  // that start together register within moments: look once more, so all see the same list.
  if (update) {
    await sleep(LAN_PACK_WAIT_MS, undefined, { signal: options.signal })
    addrs = joined.peerAddrs = await joined.rendezvous.refresh(options).catch(() => [])
    if (addrs.length === 0) return { addrs, role: 'alone' }
  }
  if (!update) return { addrs, role: 'session' }
  // An update with peers: one agent of the site (the lowest peer id listed) takes the delta
  // pack and serves what it applies; the others wait for it and claim origin chunks only if
  // it is not connected or makes no progress for LAN_LEADER_STALL_MS.
  const packLeader = siteLeader(node.peerId, idsOf(addrs))
  return { addrs, role: packLeader === node.peerId ? 'pack' : 'session', packLeader }
}

/** What the claim rounds of one sync keep across rounds. */
interface RoundState {
  /** Where the chunks lie among the version's segments; undefined (rounds of chunks in batches) without segments. */
  layout?: SegmentLayout
  limits: RoundLimits
  /** Per chunk: in a round of ours now. */
  busy: Uint8Array
  /** Per segment: in a round of ours (in flight or done). */
  taken: Uint8Array
}

/** The rounds' state: the segment layout when the coordinator has segments of the version. */
async function roundState (components: PeersSourceComponents, ctx: SyncContext, segments: SegmentSource, options: AbortOptions): Promise<RoundState> {
  const m = ctx.manifest
  const limits = { segments: 0, chunks: claimRoundChunks(m) }
  let table: SegmentTable | undefined
  try {
    table = await segments.table(ctx, options)
  } catch (err) {
    if (options.signal?.aborted === true) throw err
    components.logger.warn(`origin segments: ${(err as Error).message}; claim rounds of chunks in block batches`)
  }
  if (table == null) return { limits, busy: new Uint8Array(m.chunks.length), taken: new Uint8Array(0) }
  const layout = segmentLayout(m, table.segmentBlocks)
  limits.segments = roundSegments(m, table.segmentBlocks)
  return { layout, limits, busy: new Uint8Array(m.chunks.length), taken: new Uint8Array(layout.blocks.length) }
}

/** The next round from what the claim rule gives us now; chunks the plan does not use are released at once. */
function nextRound (state: RoundState, ctx: SyncContext, session: SwarmSession, sync: ServedSync): OriginRound {
  const { layout } = state
  if (layout == null) {
    const mine = session.originChunks(state.limits.chunks)
    return { segments: [], chunks: mine, reserved: mine, release: [] }
  }
  const mine = new Set(session.originChunks())
  if (mine.size === 0) return { segments: [], chunks: [], reserved: [], release: [] }
  const round = planOriginRound(layout, {
    mine,
    open: c => state.busy[c] === 0 && !sync.isVerified(c) && session.availability(c) === 0,
    taken: s => state.taken[s] === 1,
    needed: (s) => {
      let n = 0
      for (const b of layout.blocks[s]) if (ctx.isMissing(b) && session.availability(layout.chunkOf[b]) === 0) n++
      return n
    }
  }, state.limits)
  if (round.release.length > 0) session.release(round.release)
  return round
}

/** What one round needs besides its plan. */
interface RoundRun {
  components: PeersSourceComponents
  ctx: SyncContext
  session: SwarmSession
  sync: ServedSync
  segments: SegmentSource
  state: RoundState
  givenUp: Set<number>
  /** Chunks of our rounds that still waited for host reads at the round's end: judged once those are over. */
  deferred: number[]
  /** Chunks our rounds took from the origin (the session's own count includes those handed back). */
  fromOrigin: number
}

/** A chunk of our rounds: announced once verified, else given up (left to the sync's later phases). */
function judge (run: RoundRun, i: number): void {
  if (run.sync.isVerified(i)) { run.session.markHave(i); run.fromOrigin++ } else run.givenUp.add(i)
}

/** A round in flight: `segmentsIn` settles once its segments and the earlier rounds' are in, `done` at its end. */
interface StartedRound {
  segmentsIn: Promise<void>
  done: Promise<void>
}

/**
 * Starts one round: its segments whole (while the round before it may still be writing), then,
 * once the earlier rounds' segments are in too (`before`: what this round's chunks miss may be
 * in them), what its chunks still miss in block batches. On failure its reserved chunks are released.
 */
function startRound (run: RoundRun, round: OriginRound, before: Promise<void>, options: AbortOptions): StartedRound {
  const { components, ctx, session, sync, segments, state } = run
  for (const c of round.chunks) state.busy[c] = 1
  for (const s of round.segments) state.taken[s] = 1
  const segmentsIn = (async () => {
    if (round.segments.length > 0 && state.layout != null) {
      const blocks = round.segments.flatMap(s => [...(state.layout as SegmentLayout).blocks[s]])
      await segments.fill(narrowed(ctx, blocks), options).catch((err: unknown) => {
        // as for a lone agent (origin-sources.ts): what the segments did not give comes in batches below
        if (options.signal?.aborted === true || isDiskFull(err)) throw err
        components.logger.warn(`origin segments: ${(err as Error).message}; asking for the rest in block batches`)
      })
    }
    await before
  })()
  segmentsIn.catch(() => {}) // reported through `done`
  const done = (async () => {
    try {
      await segmentsIn
      await fetchClaimed(components, ctx, round.chunks, sync.isVerified, segments, options)
    } catch (err) {
      for (const s of round.segments) state.taken[s] = 0
      session.release(round.reserved.filter(i => !sync.isVerified(i)))
      throw err
    } finally {
      for (const c of round.chunks) state.busy[c] = 0
    }
    for (const i of round.reserved) {
      if (!sync.isVerified(i) && ctx.localPending?.(i) === true) run.deferred.push(i)
      else judge(run, i)
    }
    await ctx.tick()
  })()
  return { segmentsIn, done }
}

/**
 * Claim rounds until every chunk is verified or given up (returns the chunks taken from the origin): waits while the pack leader delivers,
 * else fetches what the claim rule gives us from the origin, LAN_ORIGIN_ROUNDS_IN_FLIGHT rounds
 * at a time (one failing aborts and releases the other). Claimed chunks that could not be
 * verified stay reserved (peers are not told we have them), left to the sync's later phases.
 */
async function claimRounds (
  components: PeersSourceComponents, ctx: SyncContext, session: SwarmSession, sync: ServedSync, packLeader: string | undefined, options: AbortOptions
): Promise<number> {
  const m = sync.manifest
  const segments = createSegmentSource(components, { image: m.name, version: m.version })
  const state = await roundState(components, ctx, segments, options)
  const run: RoundRun = { components, ctx, session, sync, segments, state, givenUp: new Set(), deferred: [], fromOrigin: 0 }
  // host reads beside us (local-pending.ts): what our rounds left to them is judged once they are over
  void ctx.localDone?.then(() => { for (const i of run.deferred.splice(0)) judge(run, i) })
  const leader = createLeaderWatch(session.remaining(), performance.now(), LAN_LEADER_STALL_MS)
  const waitForPeers = async (): Promise<void> => {
    await session.waitForChange({ signal: options.signal, timeoutMs: LAN_WAIT_MS })
    await ctx.tick()
  }
  const pipeline = new AbortController()
  const signal = options.signal == null ? pipeline.signal : AbortSignal.any([options.signal, pipeline.signal])
  const inFlight: Array<Promise<void>> = []
  let segmentsIn: Promise<void> = Promise.resolve()
  let failure: unknown
  try {
    while (session.remaining() > run.givenUp.size) {
      options.signal?.throwIfAborted()
      if (failure != null) throw failure
      for (const id of session.peers()) components.sessionPeers.add(id)
      if (packLeader != null && session.peers().includes(packLeader) && leader.waiting(session.remaining(), performance.now())) {
        await waitForPeers()
        continue
      }
      const round = nextRound(run.state, ctx, session, sync)
      if (round.chunks.length === 0 && round.segments.length === 0) {
        await (inFlight.shift() ?? waitForPeers())
        continue
      }
      const started = startRound(run, round, segmentsIn, { signal })
      segmentsIn = started.segmentsIn
      started.done.catch((err: unknown) => { failure ??= err; pipeline.abort() })
      inFlight.push(started.done)
      if (inFlight.length >= LAN_ORIGIN_ROUNDS_IN_FLIGHT) await inFlight.shift()
    }
    await Promise.all(inFlight)
    return run.fromOrigin
  } catch (err) {
    pipeline.abort()
    await Promise.allSettled(inFlight)
    throw failure ?? err
  }
}

/** The peers source for one sync of `manifest`. */
export function createPeersSource (components: PeersSourceComponents, init: { manifest: Manifest, fromVersion?: string, site: string }): BlockSource {
  const { logger } = components
  const { manifest } = init
  const { name: image, version } = manifest
  // joining and listing the peers (for an update, LAN_PACK_WAIT_MS of it) start in prepare(), while the local sources run
  let early: Promise<{ node: Swarm, sync: ServedSync, joined: Joined, listed: Listed } | undefined> | undefined
  const begin = async (options: AbortOptions): Promise<Awaited<typeof early>> => await (early ??= (async () => {
    const serving = await components.serving()
    if (serving == null || serving.sync.manifest !== manifest) return undefined
    const joined = await components.join(serving.swarm, image, version, options)
    if (joined == null) return undefined
    return { node: serving.swarm, sync: serving.sync, joined, listed: await listPeers(components, serving.swarm, joined, init.fromVersion != null, options) }
  })())
  return {
    name: 'peers',
    kind: 'peers',
    prepare (options) { begin(options).catch(() => {}) }, // its failure is the fill's to report
    async fill (ctx, options) {
      const started = await begin(options)
      if (started == null) return
      const { node, sync, joined, listed } = started
      if (listed.role === 'alone') {
        logger.info(`swarm: no peer of site ${init.site} on ${image}@${version}; using the origin's delta pack`)
        return
      }
      // peers the coordinator lists for this version may fetch from us after we are done (--linger)
      for (const id of idsOf(listed.addrs)) components.sessionPeers.add(id)
      if (listed.role === 'pack') {
        logger.info(`swarm: ${image}@${version}: this agent takes the delta pack for site ${init.site}`)
        components.tookPack(new Set(idsOf(listed.addrs)))
        return
      }
      // the list may be from before the local sources ran: the session starts with the latest
      const addrs = await refreshPeers(joined, logger, options)
      for (const id of idsOf(addrs)) components.sessionPeers.add(id)
      const session = node.createSession({
        image,
        version,
        manifest,
        capability: joined.capability,
        need: ctx.unverifiedChunks(),
        peers: addrs,
        signal: options.signal,
        onChunk: async (i, bytes) => {
          // the session verified it against this manifest (length and full digest) before handing it over
          if (!ctx.offerChunk(i, bytes, 'peers', true)) throw new Error(`chunk ${i} was refused`)
        },
        lackingBlocks: (i) => lackingBlocks(ctx, i),
        onChunkBlocks: (i, mask, blocks) => offerChunkBlocks(ctx, i, mask, blocks),
        onEvent: (e) => {
          if (e.type !== 'peer.banned') return
          logger.warn(`swarm: banned peer ${e.peerId}: chunk ${e.index}: ${e.reason}`)
          components.onBanned?.({ image, version, peerId: e.peerId, reason: e.reason })
        }
      })
      sync.session = session
      try {
        await session.start()
        // agents that registered while we dialled the listed ones start with us: the first claims wait for them too
        session.listed(await refreshPeers(joined, logger, options))
        // an update told to wait for the site's pack agent, with no peer reachable (the rendezvous still lists agents that
        // have exited): alone after all, it takes the delta pack (claim rounds would fetch the update as segments and batches)
        if (listed.packLeader != null && session.peers().length === 0) {
          logger.info(`swarm: no peer of site ${init.site} reachable on ${image}@${version}; using the origin's delta pack`)
          return
        }
        const fromOrigin = await claimRounds(components, ctx, session, sync, listed.packLeader, options)
        for (const id of session.peers()) components.sessionPeers.add(id)
        const st = session.stats()
        const fromPeers = `${plural(st.chunksFromPeers, 'chunk')} from ${plural(Object.keys(st.byPeer).length, 'peer')}`
        const parts = st.partsFromPeers > 0 ? `; of those from peers, ${st.partsFromPeers} came as only the blocks this agent lacked` : ''
        logger.info(`swarm: ${image}@${version}: ${fromPeers}, ${fromOrigin} from the origin${parts}`)
      } finally {
        await session.close()
        if (sync.session === session) sync.session = undefined
      }
    }
  }
}
