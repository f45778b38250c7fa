/**
 * Frees a large buffer's memory now rather than at V8's next full garbage
 * collection: the agent starts its old generation at 64 MiB (AGENT_NODE_FLAGS),
 * so buffers of a few MiB made per segment would pile up until then (measured
 * on 200 decoded 4 MiB segments: peak RSS 201 MiB kept, 61 MiB released, and a
 * sixth of the CPU: docs/BENCHMARKS.md "### agent CPU", round 4). Every view of
 * the buffer reads as empty afterwards, so only its one owner may call this,
 * once done with every view.
 */

/**
 * Detaches (and so frees) the memory under `bytes` when it is a buffer of its own: never a view into
 * Node's shared Buffer pool (small buffers), which other buffers use too.
 */
export function releaseBytes (bytes: Uint8Array): void {
  const memory = bytes.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer, detached?: boolean }
  if (memory.byteLength <= Buffer.poolSize || memory.detached === true) return
  memory.transfer?.(0)
}
