/** The one rule of every Ed25519 signature of trimswarm: what is signed is a context tag followed by the object's bytes. */

/** `context` (UTF-8 tag, ending in a newline) followed by `bytes`: the message that is signed and verified. */
export function signedMessage (context: Uint8Array, bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const msg = new Uint8Array(context.length + bytes.length)
  msg.set(context)
  msg.set(bytes, context.length)
  return msg
}
