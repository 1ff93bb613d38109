import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'

// R15 trusted devices: the cookie names a device (`<id>.<token>`, 256 random bits); the user's
// record holds the token's SHA-256, the secret generation it was trusted under and its expiry.
// Another user's session, a revoked or replaced secret, or an expired record: no pass.

export interface DeviceRecord {
  /** The secret's generation when trusted. */
  g: number
  /** base64url SHA-256 of the token. */
  h: string
  /** Created, expires (epoch ms). */
  c: number
  x: number
  /** A label for the list: the browser's user agent, shortened. */
  n: string
}

export interface TrustedDevice { id: string; label: string; createdAt: string; expiresAt: string; current: boolean }

const ID = /^[\w-]{12}$/
const TOKEN = /^[\w-]{43}$/
const digest = (token: string): Buffer => createHash('sha256').update(token).digest()

/** The device the request's cookie names, or null. */
export function deviceCookie (request: FastifyRequest, cookieName: string): { id: string; token: string } | null {
  const value = request.cookies?.[cookieName]
  if (typeof value !== 'string') return null
  const [id, token] = value.split('.')
  return ID.test(id ?? '') && TOKEN.test(token ?? '') ? { id, token } : null
}

/** A new device: its id, the cookie's value and the record to store. */
export function newDevice (
  request: FastifyRequest, gen: number, ttlMs: number
): { id: string; cookie: string; record: DeviceRecord } {
  const id = randomBytes(9).toString('base64url')
  const token = randomBytes(32).toString('base64url')
  const now = Date.now()
  const agent = request.headers['user-agent']
  return {
    id,
    cookie: `${id}.${token}`,
    record: {
      g: gen,
      h: digest(token).toString('base64url'),
      c: now,
      x: now + ttlMs,
      n: (typeof agent === 'string' ? agent : '').slice(0, 120)
    }
  }
}

/** The stored record, or null when it is not one (a garbled record never passes). */
export function parseDevice (text: string): DeviceRecord | null {
  try {
    const r = JSON.parse(text) as DeviceRecord
    const ok = Number.isSafeInteger(r.g) && typeof r.h === 'string' && Number.isSafeInteger(r.c) &&
      Number.isSafeInteger(r.x) && typeof r.n === 'string'
    return ok ? r : null
  } catch {
    return null
  }
}

/** Whether `token` opens `record` for the secret of generation `gen`, now. */
export function deviceValid (record: string, token: string, gen: number): boolean {
  const r = parseDevice(record)
  if (r === null || r.g !== gen || r.x <= Date.now()) return false
  const stored = Buffer.from(r.h, 'base64url')
  const given = digest(token)
  return stored.length === given.length && timingSafeEqual(stored, given)
}

export function setDeviceCookie (reply: FastifyReply, name: string, value: string, ttlMs: number): void {
  reply.setCookie(name, value, {
    path: '/',
    httpOnly: true,
    sameSite: 'lax',
    secure: reply.request.protocol === 'https',
    maxAge: Math.floor(ttlMs / 1000)
  })
}

export function clearDeviceCookie (reply: FastifyReply, name: string): void {
  reply.clearCookie(name, { path: '/' })
}

/** The user's devices still valid for the secret of generation `gen`, newest first. */
export function listValid (records: Record<string, string>, gen: number, current: string | null): TrustedDevice[] {
  const now = Date.now()
  return Object.entries(records)
    .map(([id, text]) => ({ id, r: parseDevice(text) }))
    .filter((d): d is { id: string; r: DeviceRecord } => d.r !== null && d.r.g === gen && d.r.x > now)
    .sort((a, b) => b.r.c - a.r.c)
    .map(({ id, r }) => ({
      id,
      label: r.n,
      createdAt: new Date(r.c).toISOString(),
      expiresAt: new Date(r.x).toISOString(),
      current: id === current
    }))
}
