/**
 * The receiving half of a session (session.ts): what a chunk (BLOCK, BLOCK_ZSTD) or the blocks of
 * one (BLOCK_PART) that a peer sent do to the want-list and the engine. Taken only while requested
 * of that peer and still wanted; a chunk verified whole (received-chunk.ts) before the engine sees
 * it, blocks handed to the engine, which checks each against its prefix and verifies the chunk they
 * complete. A bad one bans the peer. From acceptance to markHad nothing awaits, or the pump would
 * ask for the chunk again meanwhile.
 */
import { maskCount } from '../../protocol/block-exchange.ts'
import { BLOCK_SIZE } from '../../protocol/constants.ts'
import type { BlockServer } from './block-server.ts'
import { BadChunkError } from './errors.ts'
import type { SwarmLogger, SwarmSessionInit, SwarmSessionStats } from './interface.ts'
import { measureRate, type PeerLedger } from './peer-ledger.ts'
import { describeError } from './peer-log.ts'
import { lengthsOf, partBlocks, verifiedPieces, type ReceivedBlock, type ReceivedPart } from './received-chunk.ts'
import { HAD, ORIGIN, type WantList } from './want-list.ts'

/** A peer as the receiver sees it: its ledger and the chunks asked of it as blocks (WANT_BLOCKS). */
export interface ReceivingPeer extends PeerLedger {
  masks: Map<number, Uint8Array>
}

/** What the receiver changes and calls of its session. */
export interface ChunkReceiverComponents<P extends ReceivingPeer> {
  wants: WantList<P>
  stats: SwarmSessionStats
  server: BlockServer
  logger: SwarmLogger
  session: {
    drop: (p: P, reason: string) => void
    ban: (p: P, index: number, reason: string) => void
    /** Chunk i is here: its other requests are cancelled. */
    markHad: (i: number) => void
    schedulePump: () => void
    /** Chunk i from p is verified and the engine's: announced to peers when `announce`, waiters woken, p's pipeline refilled. */
    landed: (p: P, i: number, announce: boolean) => void
  }
}

/** The session's version and where the received chunks go; `wholeOnly` collects chunks to ask for whole from now on. */
export type ChunkReceiverInit = Pick<SwarmSessionInit, 'image' | 'version' | 'manifest' | 'onChunk' | 'onChunkParts' | 'onChunkBlocks'> & {
  wholeOnly: Set<number>
}

/** The handlers of received chunks and parts. */
export interface ChunkReceiver<P extends ReceivingPeer> {
  onBlock: (p: P, i: number, block: ReceivedBlock) => Promise<void>
  onPart: (p: P, i: number, part: ReceivedPart) => void
}

/** A receiver for one session. */
export function createChunkReceiver<P extends ReceivingPeer> (components: ChunkReceiverComponents<P>, init: ChunkReceiverInit): ChunkReceiver<P> {
  const { wants, stats, server, logger, session } = components
  const { manifest, image, version } = init
  const chunkCount = manifest.chunks.length
  const where = `${image}@${version}`

  /**
   * Whether a chunk's bytes from p are to be used: requested of it and still wanted. A duplicate
   * (cancelled, or fetched meanwhile) is counted and dropped; one never requested drops the peer.
   */
  function accepted (p: P, i: number, raw: number, what: string): boolean {
    if (i >= chunkCount || !p.inflight.has(i)) {
      if (i < chunkCount && p.cancelled.delete(i)) { stats.duplicateBytes += raw; return false }
      session.drop(p, `sent ${what} ${i} that was not requested`)
      return false
    }
    wants.unrequest(p, i)
    const state = wants.stateOf(i)
    if (state === HAD || state === ORIGIN) { stats.duplicateBytes += raw; wants.settle(i); session.schedulePump(); return false }
    return true
  }

  /** Counts a verified chunk from p. */
  function received (p: P, raw: number, wire: number): void {
    stats.bytesFromPeers += raw
    stats.wireBytesFromPeers += wire
    stats.chunksFromPeers++
    stats.byPeer[p.id] = (stats.byPeer[p.id] ?? 0) + raw
  }

  /** Chunk i is wanted again (from any peer) after `reason`: banned for it, or a failed write. */
  function failed (p: P, i: number, reason: string, ban: boolean): void {
    if (ban) session.ban(p, i, reason)
    else logger.warn(`swarm: ${where}: writing chunk ${i} failed: ${reason}`)
    wants.settle(i)
    session.schedulePump()
  }

  /** Hands a verified chunk to the engine; false (the chunk wanted again) when it could not take it. */
  async function deliver (p: P, i: number, parts: readonly Uint8Array[], bytes: Uint8Array): Promise<boolean> {
    try {
      if (init.onChunkParts != null) await init.onChunkParts(i, parts, p.id)
      else await init.onChunk?.(i, bytes, p.id)
      return true
    } catch (err) {
      logger.warn(`swarm: ${where}: writing chunk ${i} failed: ${describeError(err)}`)
      wants.want(i)
      session.schedulePump()
      return false
    }
  }

  return {
    // `parts`: the chunk as received (several pieces when it spanned transport messages), hashed
    // and handed on as they are; `bytes` joins them, read only for an onChunk consumer. A
    // compressed chunk is decoded only when it is wanted (not for a duplicate).
    async onBlock (p, i, block) {
      const { wire, raw } = lengthsOf(block, manifest.chunks[i])
      measureRate(p, raw, performance.now())
      if (!accepted(p, i, raw, 'chunk')) return
      p.masks.delete(i) // asked for as blocks, sent whole: as good, once verified
      let parts: readonly Uint8Array[]
      try {
        parts = verifiedPieces(i, block, manifest.chunks[i])
      } catch (err) {
        failed(p, i, (err as Error).message, true)
        return
      }
      // First verified copy: cancel the endgame duplicates.
      session.markHad(i)
      received(p, raw, wire)
      // verified: other peers may get the same frame without our compressing it again
      if (block.type === 'block-zstd') server.keepCompressed(image, version, i, raw, block.bytes)
      if (await deliver(p, i, parts, block.type === 'block' ? block.bytes : parts[0])) session.landed(p, i, true)
    },
    // the blocks of chunk i that p sent for our WANT_BLOCKS: decoded within their length, checked and placed by the engine
    onPart (p, i, part) {
      const mask = p.masks.get(i)
      if (mask == null) { session.drop(p, `sent blocks of chunk ${i} that were not requested`); return }
      const raw = maskCount(mask) * BLOCK_SIZE
      measureRate(p, raw, performance.now())
      if (!accepted(p, i, raw, 'blocks of chunk')) return
      p.masks.delete(i)
      let verdict: ReturnType<NonNullable<ChunkReceiverInit['onChunkBlocks']>>
      try {
        verdict = (init.onChunkBlocks as NonNullable<ChunkReceiverInit['onChunkBlocks']>)(i, mask, partBlocks(i, part, raw), p.id)
      } catch (err) {
        failed(p, i, describeError(err), err instanceof BadChunkError)
        return
      }
      if (verdict === 'bad') { failed(p, i, `blocks of chunk ${i} do not match the manifest`, true); return }
      if (verdict === 'unverified') {
        logger.warn(`swarm: ${where}: chunk ${i}: its blocks matched the manifest but the chunk does not; asking for it whole`)
        init.wholeOnly.add(i)
        wants.settle(i)
        session.schedulePump()
        return
      }
      received(p, raw, part.bytes.length)
      stats.partsFromPeers++
      if (part.compressed) server.keepCompressed(image, version, i, raw, part.bytes, mask)
      // the engine may have said so already (markHave, as it verified the chunk): once is enough
      const first = wants.stateOf(i) !== HAD
      if (first) session.markHad(i)
      session.landed(p, i, first)
    }
  }
}
