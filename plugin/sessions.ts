import type { FastifyRequest } from 'fastify'
import type { UserRef } from './types.js'

/**
 * A new session id once a code (or a trusted device) is verified; the app's own session data is
 * carried over. The mark remembers when, so that step-up (`maxAge`) and `verifiedFor` can ask again.
 */
export async function markVerified (
  request: FastifyRequest, ref: UserRef, gen: number, by: 'code' | 'device' = 'code'
): Promise<void> {
  // the mark goes in with the new session's first write (the save on send then has nothing new)
  const mark = { t: ref.tenant, u: ref.userId, g: gen, v: Date.now() }
  request.session.totp = by === 'device' ? { ...mark, d: 1 } : mark
  const keep = Object.keys(request.session).filter((k) => k !== 'cookie')
  try {
    await request.session.regenerate(keep)
  } catch (err) {
    // fail closed: whichever session the request is left with is saved unverified
    if (request.session) request.session.totp = undefined
    throw err
  }
}
