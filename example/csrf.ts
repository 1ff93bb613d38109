import { randomBytes, timingSafeEqual } from 'node:crypto'
import createError from '@fastify/error'
import type { FastifyInstance } from 'fastify'

declare module 'fastify' {
  interface Session {
    csrfToken?: string
  }
}

export const CsrfError = createError('EXAMPLE_CSRF', 'Missing or invalid CSRF token; reload the page', 403)
export const CSRF_HEADER = 'x-csrf-token'
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * CSRF protection, synchronizer-token style: the pages get a random token bound to
 * the session from `GET /csrf` and send it back in the `x-csrf-token` header of every
 * state-changing request (sign-in, sign-out, TOTP setup, confirm, verify, revoke,
 * enforcement, settings). Another site cannot read the token, and cannot even send a
 * custom header cross-origin without a CORS preflight, which this app never grants.
 * The session cookie is also SameSite. Register after @fastify/session and before
 * fastify-totp-gate, so a forged request is refused before anything else looks at it.
 */
export function csrfProtection (app: FastifyInstance): void {
  app.get('/csrf', { config: { totp: false } }, async (request, reply) => {
    request.session.csrfToken ??= randomBytes(32).toString('base64url')
    reply.header('cache-control', 'no-store')
    return { token: request.session.csrfToken }
  })

  app.addHook('onRequest', async (request) => {
    if (SAFE_METHODS.has(request.method)) return
    const expected = request.session.csrfToken
    const given = request.headers[CSRF_HEADER]
    if (typeof expected !== 'string' || typeof given !== 'string' || !sameString(given, expected)) throw new CsrfError()
  })
}

// constant time, so the token cannot be guessed byte by byte from response times
function sameString (a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}
