import type { FastifyInstance } from 'fastify'
import { lockedUntilIso, requireUser, type TotpContext } from '../context.js'
import { markVerified } from '../sessions.js'
import { decideCode } from '../verification.js'
import { BODY_LIMIT, codeBody } from './schemas.js'

/** GET /status and POST /verify: the routes a gated session may call before its code. */
export function verifyRoutes (scope: FastifyInstance, ctx: TotpContext): void {
  scope.get('/status', {
    config: { totp: { allowUnverified: true, allowSetupRequired: true } }
  }, async (request) => {
    const { state, verified } = requireUser(request)
    const enforced = state.enforced || state.enforceAll
    return {
      enabled: state.enabled,
      enforced,
      verified,
      setupRequired: !state.enabled && enforced,
      lockedUntil: lockedUntilIso(state)
    }
  })

  scope.post<{ Body: { code: string } }>('/verify', {
    bodyLimit: BODY_LIMIT,
    schema: { body: codeBody(ctx.opts.totp.digits) },
    config: { totp: { allowUnverified: true, readsCode: true } }
  }, async (request, reply) => {
    const { ref } = requireUser(request)
    const gen = await decideCode(ctx, { request, reply, ref, kind: 'verify' })
    await markVerified(request, ref, gen)
    ctx.emit(request, { type: 'verify.succeeded', ...ref, ip: request.ip })
    return { verified: true }
  })
}
