import type { FastifyRequest } from 'fastify'
import { sessionsOf } from './session-adapter.js'
import type { UserRef } from './types.js'

/**
 * A new session once a code (or a trusted device) is verified (a new id, or a new cookie); the
 * app's own session data is carried over. The mark remembers when, so that step-up (`maxAge`)
 * and `verifiedFor` can ask again.
 */
export async function markVerified (
  request: FastifyRequest, ref: UserRef, gen: number, by: 'code' | 'device' = 'code'
): Promise<void> {
  const sessions = sessionsOf(request)
  const mark = { t: ref.tenant, u: ref.userId, g: gen, v: Date.now() }
  sessions.set(request, by === 'device' ? { ...mark, d: 1 } : mark)
  try {
    await sessions.regenerate(request)
  } catch (err) {
    // fail closed: whichever session the request is left with is saved unverified
    sessions.clear(request)
    throw err
  }
}
