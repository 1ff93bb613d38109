import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { TotpRequiredError, TotpSetupRequiredError, TotpUnavailableError } from './errors.js'
import { linked, readGate, type TotpContext, userRef } from './context.js'
import type { TotpRouteConfig } from './augment.js'
import type { TotpUser } from './options.js'
import type { GateState, UserRef } from './stores/store.js'

/**
 * The onRequest hook behind R3. Protected by default: only `config: { totp: false }`
 * opts a route out. At most one store call (one Redis command) per signed-in request, none
 * where the session store read the state along with the session; on the routes that check
 * a code, that read also brings what the check needs. Callback style, so that a request
 * whose state came with its session passes without a promise.
 */
export function createGate (ctx: TotpContext) {
  // R4/R5/R7: a verified session passes; an enrolled user's unverified one gets 401; an
  // enforced user without TOTP gets 403 until set up (routes may allow either).
  function decide (request: FastifyRequest, config: TotpRouteConfig | undefined, user: TotpUser, ref: UserRef, named: boolean, state: GateState): void {
    // a custom store that answers something else than a state: fail closed (S6)
    if (typeof state?.enabled !== 'boolean') throw new TotpUnavailableError({ cause: new TypeError('the store answered no gate state') })
    const session = request.session
    const mark = session?.totp ?? undefined
    const same = mark !== undefined && mark.u === ref.userId && mark.t === ref.tenant
    const verified = same && state.enabled && mark.g === state.gen
    if (session && !verified) {
      // revoked or re-enrolled since, or another user: the session loses its verified state (R4).
      // Where the session store reads along, the session names its user for the next read, and
      // whether a code check may come next (p: the user has a secret), so that it reads that along.
      if (named) {
        if (!same || mark.g !== undefined || (mark.p === 1) !== state.enabled) {
          session.totp = state.enabled ? { t: ref.tenant, u: ref.userId, p: 1 } : { t: ref.tenant, u: ref.userId }
        }
      } else if (mark?.g !== undefined) session.totp = undefined
    }
    request.totp = { user, ref, state, verified }
    if (state.enabled) {
      if (verified || config?.allowUnverified === true) return
      throw new TotpRequiredError()
    }
    if ((state.enforced || state.enforceAll) && config?.allowSetupRequired !== true) throw new TotpSetupRequiredError()
  }

  // Never throws: every outcome goes to `done`, once, outside any try block.
  function settle (request: FastifyRequest, config: TotpRouteConfig | undefined, user: TotpUser, ref: UserRef, named: boolean, state: GateState, done: HookHandlerDoneFunction): void {
    let failed: Error | undefined
    try {
      decide(request, config, user, ref, named, state)
    } catch (err) {
      failed = err as Error
    }
    done(failed)
  }

  // Signed out: whatever the session verified goes with its user, so that signing in again in
  // the same session (an app that neither destroys nor regenerates it) asks for a code (R3).
  function signedOut (request: FastifyRequest, done: HookHandlerDoneFunction): void {
    if (request.session?.totp != null) request.session.totp = undefined
    done()
  }

  function withUser (request: FastifyRequest, config: TotpRouteConfig | false | undefined, user: TotpUser | null | undefined, done: HookHandlerDoneFunction): void {
    if (user === null || user === undefined) return signedOut(request, done)
    if (config === false) return done()
    let ref: UserRef, named: boolean, read: GateState | Promise<GateState>
    try {
      ref = userRef(user)
      named = linked(ctx, request)
      read = readGate(ctx, request, ref, config?.readsCode === true)
    } catch (err) {
      // a store that throws instead of rejecting cannot answer either: fail closed (S6)
      return done(new TotpUnavailableError({ cause: err }))
    }
    if (read instanceof Promise) read.then((state) => settle(request, config, user, ref, named, state, done), done)
    else settle(request, config, user, ref, named, read, done)
  }

  return function totpGate (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const config = request.routeOptions.config.totp
    // an opted-out route (sign-in, sign-out) is not gated: it only ends a signed-out session's mark
    if (config === false && request.session?.totp == null) return done()
    let user: ReturnType<typeof ctx.opts.getUser>
    try {
      user = ctx.opts.getUser(request)
    } catch (err) {
      // a getUser that fails is not the gate's to answer on a route it does not guard
      return config === false ? done() : done(err as Error)
    }
    // the app's getUser may answer at once or with a promise (any thenable)
    if (typeof (user as PromiseLike<unknown> | null | undefined)?.then === 'function') {
      Promise.resolve(user).then((u) => withUser(request, config, u, done), config === false ? () => done() : done)
    } else withUser(request, config, user as TotpUser | null | undefined, done)
  }
}
