/** Access checks shared by every route that serves image data. */
import { ForbiddenError } from '../protocol/errors.ts'
import type { Principal } from './interface.ts'

/** Whether policy lets the caller get this image. */
export function canAccessImage (principal: Principal, image: string): boolean {
  return principal.kind === 'admin' || principal.policy.images.includes('*') || principal.policy.images.includes(image)
}

/** Throws ForbiddenError unless policy lets the caller get this image. */
export function assertImageAccess (principal: Principal, image: string): void {
  if (!canAccessImage(principal, image)) throw new ForbiddenError(`policy does not give ${principal.user} the image ${image}`)
}

/** Throws ForbiddenError unless the caller is the admin. */
export function assertAdmin (principal: Principal): void {
  if (principal.kind !== 'admin') throw new ForbiddenError('this needs the admin token')
}

/**
 * The caller's stable identity, for state that must stay the caller's own (agent records, site hints,
 * peer registrations): the machine token's id, the user's name, or the admin. Kinds are prefixed so a
 * user cannot be named like a token.
 */
export function principalKey (principal: Principal): string {
  switch (principal.kind) {
    case 'machine': return `t:${principal.user}`
    case 'user': return `u:${principal.user}`
    case 'admin': return 'admin'
  }
}
