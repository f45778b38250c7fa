/** Peer ids in multiaddrs (what the rendezvous and DHT hand out carry a /p2p/ component). */
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'

/** The peer id in a multiaddr's /p2p/ component; undefined when it has none or does not parse. */
export function peerIdOf (addr: string | Multiaddr): string | undefined {
  try {
    return (typeof addr === 'string' ? multiaddr(addr) : addr).getComponents().find(c => c.name === 'p2p')?.value
  } catch {
    return undefined
  }
}
