import type { FastifyReply, FastifyRequest } from 'fastify'
import { userRef, type TotpContext } from './context.js'
import { TotpRequiredError, TotpSetupRequiredError, TotpUnavailableError } from './errors.js'
import type { GateState, TotpRouteConfig, TotpUser, UserRef } from './types.js'
import { keepRead } from './verification.js'

/**
 * The hook that decides, for every request, whether the session must still present a code.
 * Protected by default: only `config: { totp: false }` opts a route out. It runs at
 * `preValidation`, once the body has arrived, so that a decision is never older than the
 * request it lets through; one store call (one Redis command) per signed-in request.
 */
export function createGate (ctx: TotpContext) {
  const { getUser } = ctx.opts

  return async function totpGate (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const config = request.routeOptions.config.totp
    // an opted-out route (sign-in, sign-out) is not gated: it only ends a signed-out session's mark
    if (config === false && request.session?.totp == null) return
    let user: TotpUser | null | undefined
    try {
      user = await getUser(request)
    } catch (err) {
      // a getUser that fails is not the gate's to answer on a route it does not guard
      if (config === false) return
      throw err
    }
    if (user === null || user === undefined) {
      // signed out: whatever the session verified goes with its user, so that signing in again
      // in the same session (an app that neither destroys nor regenerates it) asks for a code
      if (request.session?.totp != null) request.session.totp = undefined
      return
    }
    if (config === false) return
    const ref = userRef(user)
    let state: GateState
    if (config?.readsCode === true) {
      const read = await ctx.store.check(ref)
      keepRead(request, read)
      state = read.gate
    } else {
      state = await ctx.store.gate(ref)
    }
    decide(request, reply, config, user, ref, state)
  }
}

// A verified session passes; an enrolled user's unverified one gets 401; an enforced user
// without TOTP gets 403 until set up (routes may allow either).
function decide (
  request: FastifyRequest,
  reply: FastifyReply,
  config: TotpRouteConfig | undefined,
  user: TotpUser,
  ref: UserRef,
  state: GateState
): void {
  // a custom store that answers something else than a state: fail closed
  if (typeof state?.enabled !== 'boolean') {
    throw new TotpUnavailableError({ cause: new TypeError('the store answered no gate state') })
  }
  const session = request.session
  const mark = session?.totp
  const verified = mark != null && mark.u === ref.userId && mark.t === ref.tenant &&
    state.enabled && mark.g === state.gen
  // revoked or re-enrolled since, or another user: the session loses its verified state
  if (!verified && mark != null) session.totp = undefined
  request.totp = { user, ref, state, verified }
  if (state.enabled) {
    if (verified || config?.allowUnverified === true) return
    throw refusal(reply, new TotpRequiredError())
  }
  if ((state.enforced || state.enforceAll) && config?.allowSetupRequired !== true) {
    throw refusal(reply, new TotpSetupRequiredError())
  }
}

// A refusal is never cached, whichever route it answers for.
function refusal (reply: FastifyReply, err: Error): Error {
  reply.header('cache-control', 'no-store')
  return err
}
