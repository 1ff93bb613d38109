import type { FastifyInstance } from 'fastify'
import { TotpNotEnabledError } from '../errors.js'
import { checkCode, decideOnCurrent, failure, guarded, locked, lockedUntilIso, markVerified, requireUser, type TotpContext } from '../context.js'
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
    // R4: the code is checked against the secret the gate read, and consumed (or charged) only
    // while that secret's generation is still the user's; revoked or replaced meanwhile (a slow
    // body, a revocation racing the request), the code is checked again against what is there now
    const r = await decideOnCurrent(async (fresh) => {
      const checked = await checkCode(ctx, request, reply, ref, 'verify.failed', (st) => {
        if (st.sealed === null) throw new TotpNotEnabledError()
        return { sealed: st.sealed, afterTimeStep: st.lastStep }
      }, fresh)
      // the IP's budget, when the gate's read did not bring it, is checked with the consume
      return checked && guarded(ctx.store.consume(ref, checked.timeStep, checked.st.gen, checked.ip))
    })
    if (!r.ok) {
      if (r.reason === 'not-enabled') throw new TotpNotEnabledError()
      if (r.reason === 'ip-locked') locked(reply, r.retryAfterMs)
      // lost the race for this time step: a reused code, already charged by the script
      return failure(ctx, request, reply, ref, 'verify.failed', r)
    }
    await markVerified(request, ref, r.gen)
    ctx.emit(request, { type: 'verify.succeeded', ...ref, ip: request.ip })
    return { verified: true }
  })
}
