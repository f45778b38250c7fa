/** The LAN swarm's public surface (what the sync engine and the daemon use). */
export { createSwarm, imageVersionKey } from './swarm.ts'
export type {
  ChunkProvider, PeerAddress, ServedVersion, ServeInit, Swarm, SwarmComponents, SwarmEvent, SwarmInit, SwarmLogger, SwarmSession,
  SwarmSessionInit, SwarmSessionStats, SwarmServeStats
} from './interface.ts'
export { BadChunkError, PeerProtocolError, PeerRefusedError, SwarmNotStartedError } from './errors.ts'
export { loadOrCreatePeerKey } from './identity.ts'
export { peerIdOf } from './peer-id.ts'
export { createRendezvous } from './rendezvous.ts'
export type { Rendezvous, RendezvousComponents, RendezvousInit } from './rendezvous.ts'
