import type { FastifyReply, FastifyRequest } from 'fastify'
import { userRef, type TotpContext } from './context.js'
import { deviceCookie, deviceValid } from './devices.js'
import {
  TotpBadUserError, TotpRequiredError, TotpSetupRequiredError, TotpStepUpRequiredError, TotpUnavailableError
} from './errors.js'
import type { SessionAdapter } from './session-adapter.js'
import { markVerified } from './sessions.js'
import type { GateState, TotpRouteConfig, TotpSessionState, TotpUser, UserRef } from './types.js'
import { keepRead } from './verification.js'

/**
 * The hook that decides, for every request, whether the session must still present a code.
 * Protected by default: only `config: { totp: false }` opts a route out. It runs at
 * `preValidation`, once the body has arrived, so that a decision is never older than the
 * request it lets through; one store call (one Redis command) per signed-in request, whatever
 * the policies (roles, grace period, trusted device).
 */
export function createGate (ctx: TotpContext, sessions: SessionAdapter) {
  const { getUser, verifiedForMs, trustDevice, skip } = ctx.opts

  // the session's mark, if it is this user's under this generation and not too old
  const fresh = (mark: TotpSessionState | undefined, ref: UserRef, now: number): boolean =>
    mark != null && mark.u === ref.userId && mark.t === ref.tenant &&
    (verifiedForMs === null || now - (mark.v ?? 0) <= verifiedForMs)

  return async function totpGate (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    // `skip` is the app's `config: { totp: false }` for routes it does not own
    const config = skip?.(request) === true ? false : request.routeOptions.config.totp
    // an opted-out route (sign-in, sign-out) is not gated: it only ends a signed-out session's mark
    if (config === false && sessions.get(request) == null) return
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
      sessions.clear(request)
      return
    }
    if (config === false) return
    const ref = userRef(user)
    const now = Date.now()
    const mark = sessions.get(request)
    const own = fresh(mark, ref, now)
    // a trusted device is looked up (in the same command) only for a session not verified yet
    const device = trustDevice !== null && !own ? deviceCookie(request, trustDevice.cookieName) : null
    // roles of another shape would silently turn role enforcement off: refused like a bad id
    const roles = user.roles
    if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string')) {
      throw new TotpBadUserError('roles must be an array of strings')
    }
    const query = { roles, device: device?.id ?? null, mode: 'gate' as const }
    let state: GateState
    if (config?.readsCode === true) {
      const read = await ctx.store.check(ref, query)
      keepRead(request, read)
      state = read.gate
    } else {
      state = await ctx.store.gate(ref, query)
    }
    // a custom store that answers something else than a state: fail closed
    if (typeof state?.enabled !== 'boolean') {
      throw new TotpUnavailableError({ cause: new TypeError('the store answered no gate state') })
    }
    let verified = state.enabled && own && mark!.g === state.gen
    // revoked or re-enrolled since, expired, or another user: the session loses its verified state
    if (!verified && mark != null) sessions.clear(request)
    // a trusted device passes an enrolled user who is not locked (a lock means someone is guessing)
    if (!verified && device !== null && state.enabled && state.lockedUntil <= now &&
      deviceValid(state.device, device.token, state.gen)) {
      await markVerified(request, ref, state.gen, 'device')
      ctx.emit(request, { type: 'device.used', ...ref, ip: request.ip, deviceId: device.id })
      verified = true
    }
    request.totp = { user, ref, state, verified }
    decide(reply, config, state, verified, sessions.get(request), now)
  }
}

// A verified session passes (a step-up route: verified by a code, recently enough); an enrolled
// user's unverified one gets 401; a user without TOTP gets 403 where it is required, or enforced
// once any grace period is over. Routes may allow either.
function decide (
  reply: FastifyReply,
  config: TotpRouteConfig | undefined,
  state: GateState,
  verified: boolean,
  mark: TotpSessionState | undefined,
  now: number
): void {
  if (state.enabled) {
    if (!verified) {
      if (config?.allowUnverified === true) return
      throw refusal(reply, new TotpRequiredError())
    }
    const maxAge = config?.maxAge
    // written so that a maxAge that is not a number refuses (routes are also checked at start)
    if (maxAge !== undefined && (mark?.d === 1 || !(now - (mark?.v ?? 0) <= maxAge * 1000))) {
      throw refusal(reply, new TotpStepUpRequiredError())
    }
    return
  }
  if (config?.allowSetupRequired === true) return
  if (config?.required === true || config?.maxAge !== undefined) throw refusal(reply, new TotpSetupRequiredError())
  const enforced = state.enforced || state.enforceAll || state.roleEnforced
  if (enforced && !(state.setupDeadline > now)) throw refusal(reply, new TotpSetupRequiredError())
}

// A refusal is never cached, whichever route it answers for.
function refusal (reply: FastifyReply, err: Error): Error {
  reply.header('cache-control', 'no-store')
  return err
}
