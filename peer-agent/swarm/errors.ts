/** Errors of the LAN swarm (wire errors live in protocol/). */

/** A peer sent a chunk that does not hash to the manifest's digest. */
export class BadChunkError extends Error {
  static override name = 'BadChunkError'
  override name = 'BadChunkError'
}

/** A peer broke the block-exchange protocol (unexpected message, unrequested block, too many wants). */
export class PeerProtocolError extends Error {
  static override name = 'PeerProtocolError'
  override name = 'PeerProtocolError'
}

/** A peer refused us (ERROR message) or stopped answering. */
export class PeerRefusedError extends Error {
  static override name = 'PeerRefusedError'
  override name = 'PeerRefusedError'
}

/** The swarm was used before start() or after stop(). */
export class SwarmNotStartedError extends Error {
  static override name = 'SwarmNotStartedError'
  override name = 'SwarmNotStartedError'
}
