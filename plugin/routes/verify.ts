import type { FastifyInstance } from 'fastify'
import { TotpNotEnabledError } from '../errors.js'
import { consumerToken, failure, guarded, locked, markVerified, openSecret, requireUser, SECRET_PURPOSE, type TotpContext } from '../context.js'
import { verifyCode } from '../totp/index.js'
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
      lockedUntil: state.lockedUntil > Date.now() ? new Date(state.lockedUntil).toISOString() : null
    }
  })

  scope.post<{ Body: { code: string } }>('/verify', {
    bodyLimit: BODY_LIMIT,
    schema: { body: codeBody(ctx.opts.totp.digits) },
    config: { totp: { allowUnverified: true } }
  }, async (request, reply) => {
    const { ref } = requireUser(request)
    const [ipMs, st] = await guarded(Promise.all([ctx.store.ipBlocked(request.ip), ctx.store.load(ref)]))
    if (st.sealed === null) throw new TotpNotEnabledError()
    // S4: while locked, answer without checking the code
    if (st.lockedForMs > 0) locked(reply, st.lockedForMs)
    if (ipMs > 0) locked(reply, ipMs)
    const secret = openSecret(ctx, request, st.sealed, ref)
    const consumer = consumerToken(request)
    // this session consumed the last step but may never have heard so: the same code completes it
    const after = st.lastStep < 0 ? undefined : st.consumer === consumer ? st.lastStep - 1 : st.lastStep
    const v = verifyCode(secret, request.body.code, ctx.opts.totp, { afterTimeStep: after })
    if (!v.valid) return failure(ctx, request, reply, ref, 'verify.failed')
    const r = await guarded(ctx.store.consume(ref, v.timeStep, consumer))
    if (!r.ok) {
      if (r.reason === 'not-enabled') throw new TotpNotEnabledError()
      // lost the race for this time step: a reused code, already charged by the script
      return failure(ctx, request, reply, ref, 'verify.failed', r)
    }
    await markVerified(request, ref, r.gen)
    ctx.emit(request, { type: 'verify.succeeded', ...ref, ip: request.ip })
    return { verified: true }
  })
}
