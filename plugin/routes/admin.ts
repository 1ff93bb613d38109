import type { FastifyInstance, FastifyRequest } from 'fastify'
import { forbidden, MAX_ID_BYTES, requireUser, type TotpContext } from '../context.js'
import { TotpBadRequestError, TotpUserNotFoundError } from '../errors.js'
import type { TotpOperator } from '../operator.js'
import {
  refusal, SELF_ENFORCE, SELF_REVOKE, SELF_UNLOCK, targetSubject, type TotpAction, type TotpSubjectType
} from '../policy/abilities.js'
import { DEFAULT_TENANT, type TotpUser } from '../types.js'
import {
  documented, enforcementAnswer, enforcementBody, errorAnswers, noContent, userParams, userStatusAnswer
} from './schemas.js'

const USER_ERRORS = { 404: 'FST_TOTP_USER_NOT_FOUND: unknown user, or one of another tenant' }

type UserRoute = { Params: { userId: string } }

/** The per-user admin routes (status, revocation, enforcement): every decision is a CASL ability check. */
export function adminRoutes (scope: FastifyInstance, ctx: TotpContext, op: TotpOperator): void {
  const findUser = ctx.opts.findUser
  if (findUser === undefined) return
  const find = findUser

  async function authorize (
    request: FastifyRequest<UserRoute>,
    action: TotpAction,
    type: Exclude<TotpSubjectType, 'TotpSettings'>,
    self = action === 'revoke' ? SELF_REVOKE : SELF_ENFORCE
  ): Promise<{ actor: TotpUser; target: TotpUser; tenant: string }> {
    const { user: actor, ref } = requireUser(request)
    const id = request.params.userId
    if (Buffer.byteLength(id) > MAX_ID_BYTES) throw new TotpBadRequestError(`userId is over ${MAX_ID_BYTES} bytes`)
    // first whether the actor could act on any user of that id (at best, as its parent): an
    // actor without the roles learns nothing about which ids exist
    const best = { id, tenant: ref.tenant, parentId: actor.id, ancestorIds: [actor.id], roles: [] }
    if (id !== actor.id) {
      const why = refusal(ctx.abilities(actor), action, targetSubject(type, best))
      if (why !== null) throw forbidden(request, why)
    }
    const target = await find(ref.tenant, id)
    // an unknown user, or one of another tenant, is not found
    if (target === null || target === undefined || (target.tenant ?? DEFAULT_TENANT) !== ref.tenant) {
      throw new TotpUserNotFoundError()
    }
    // R4/R5 "whatever the roles": never oneself, even where an app's own `defineAbilities` would allow it
    if (target.id === actor.id && action !== 'read') throw forbidden(request, self)
    const why = refusal(ctx.abilities(actor), action, targetSubject(type, target))
    if (why !== null) throw forbidden(request, why)
    return { actor, target, tenant: ref.tenant }
  }

  scope.get<UserRoute>('/users/:userId', {
    schema: {
      params: userParams,
      ...documented('A user\'s TOTP state', {
        200: userStatusAnswer,
        ...errorAnswers([400, 401, 403, 404, 500, 503], USER_ERRORS)
      })
    }
  }, async (request) => {
    const { target, tenant } = await authorize(request, 'read', 'TotpStatus')
    return op.status(target, { tenant })
  })

  scope.delete<UserRoute>('/users/:userId/secret', {
    schema: {
      params: userParams,
      ...documented('Revoke a user\'s secret (and pending setup, recovery codes, lock)', {
        204: noContent('Revoked; the user\'s sessions lose their verified state'),
        ...errorAnswers([400, 401, 403, 404, 413, 500, 503], USER_ERRORS)
      })
    }
  }, async (request, reply) => {
    const { actor, target, tenant } = await authorize(request, 'revoke', 'TotpSecret')
    await op.revoke(target.id, { tenant, actorId: actor.id, request })
    return reply.code(204).send()
  })

  // R10: whoever may revoke a user's secret may end that user's lock; never oneself
  scope.delete<UserRoute>('/users/:userId/lock', {
    schema: {
      params: userParams,
      ...documented('End a user\'s lock', {
        204: noContent('Unlocked (also when there was no lock)'),
        ...errorAnswers([400, 401, 403, 404, 413, 500, 503], USER_ERRORS)
      })
    }
  }, async (request, reply) => {
    const { actor, target, tenant } = await authorize(request, 'revoke', 'TotpSecret', SELF_UNLOCK)
    await op.unlock(target.id, { tenant, actorId: actor.id, request })
    return reply.code(204).send()
  })

  scope.put<UserRoute & { Body: { enforced: boolean } }>('/users/:userId/enforcement', {
    schema: {
      params: userParams,
      body: enforcementBody,
      ...documented('Enforce TOTP for a user, or stop', {
        200: enforcementAnswer,
        ...errorAnswers([400, 401, 403, 404, 413, 500, 503], USER_ERRORS)
      })
    }
  }, async (request) => {
    const { actor, target, tenant } = await authorize(request, 'update', 'TotpEnforcement')
    await op.setEnforced(target.id, request.body.enforced, { tenant, actorId: actor.id, request })
    return { userId: target.id, enforced: request.body.enforced }
  })
}
