// Helpers for an app's own tests: the code an authenticator app would show, without writing
// RFC 6238 by hand. Import from 'fastify-totp-gate/testing'; never in production code.
import { decodeSecret, DEFAULT_TOTP_PARAMS, generateCode as codeAt, type HashAlgorithm } from './totp/index.js'

export interface CodeOptions {
  /** The time the code is for: a Date or epoch milliseconds. @default now */
  at?: Date | number
  /** Steps after (or, negative, before) the one of `at`. @default 0 */
  steps?: number
  /** As registered with the plugin. @default 6, 30, 'sha1' */
  digits?: 6 | 7 | 8
  period?: number
  algorithm?: HashAlgorithm
}

/**
 * The code for `secret` (the base32 `secret` of `POST /totp/setup`, or the `secret=` of its
 * `uri`) at `at`. A code verifies once (replay protection): for a second verification in the
 * same 30 s use `nextCode`.
 */
export function generateCode (secret: string, opts: CodeOptions = {}): string {
  const params = {
    ...DEFAULT_TOTP_PARAMS,
    ...(opts.digits !== undefined ? { digits: opts.digits } : {}),
    ...(opts.period !== undefined ? { period: opts.period } : {}),
    ...(opts.algorithm !== undefined ? { algorithm: opts.algorithm } : {})
  }
  const at = opts.at === undefined ? Date.now() : typeof opts.at === 'number' ? opts.at : opts.at.getTime()
  return codeAt(decodeSecret(secret), params, at / 1000 + (opts.steps ?? 0) * params.period)
}

/** The code of the step after the current one (accepted now, within the default window of 1). */
export function nextCode (secret: string, opts: Omit<CodeOptions, 'steps'> = {}): string {
  return generateCode(secret, { ...opts, steps: 1 })
}
