import type { FastifyReply, FastifyRequest } from 'fastify'
import { TotpRequiredError, TotpSetupRequiredError } from './errors.js'
import { guarded, readCheck, type TotpContext, userRef } from './context.js'

/**
 * The onRequest hook behind R3. Protected by default: only `config: { totp: false }`
 * opts a route out. One store call (one Redis command) per signed-in request; on the
 * routes that check a code, that call also reads what the check needs.
 */
export function createGate (ctx: TotpContext) {
  return async function totpGate (request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const config = request.routeOptions.config.totp
    if (config === false) return
    const user = await ctx.opts.getUser(request)
    if (user === null || user === undefined) return
    const ref = userRef(user)
    const state = config?.readsCode === true ? await readCheck(ctx, request, ref) : await guarded(ctx.store.gate(ref))
    const mark = request.session?.totp
    let verified = false
    if (mark !== undefined) {
      verified = state.enabled && mark.u === ref.userId && mark.t === ref.tenant && mark.g === state.gen
      // revoked or re-enrolled since: the session loses its verified state (R4)
      if (!verified) request.session.totp = undefined
    }
    request.totp = { user, ref, state, verified }
    if (state.enabled) {
      if (verified || config?.allowUnverified === true) return
      throw new TotpRequiredError()
    }
    if ((state.enforced || state.enforceAll) && config?.allowSetupRequired !== true) throw new TotpSetupRequiredError()
  }
}
