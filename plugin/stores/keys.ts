import { crc32 } from 'node:zlib'
import type { UserRef } from './store.js'

// Encoded so that no tenant or user id can forge another's key or hash tag.
const enc = (s: string): string => /^[\w.@-]*$/.test(s) ? s : encodeURIComponent(s)

const READ_ALONG_NAMES = 10_000

/**
 * Redis key layout. A user's keys share the hash tag `{tenant:shard}`, so each
 * user's scripts run on one cluster slot; the tenant's settings are copied into
 * every shard so the gate reads user and tenant in one command.
 */
export class KeyLayout {
  // a prefix with a tab or a newline cannot be named in a session's read-along header
  readonly #headerSafe: boolean
  // readAlongNames, by tenant then user id (no joined key that two pairs could share)
  readonly #names = new Map<string, Map<string, string>>()
  #named = 0

  constructor (readonly prefix: string, readonly shards: number) {
    this.#headerSafe = !/[\t\n]/.test(prefix)
  }

  tag (tenant: string, shard: number): string {
    return `${this.prefix}{${enc(tenant)}:${shard}}`
  }

  shardOf (userId: string): number {
    return crc32(userId) % this.shards
  }

  /** The hash tag every key of this user shares (pass it on when building several of them). */
  userTag (ref: UserRef): string {
    return this.tag(ref.tenant, this.shardOf(ref.userId))
  }

  user (ref: UserRef, tag = this.userTag(ref)): string {
    return `${tag}u:${enc(ref.userId)}`
  }

  pending (ref: UserRef, tag = this.userTag(ref)): string {
    return `${tag}p:${enc(ref.userId)}`
  }

  settings (tenant: string, shard: number): string {
    return `${this.tag(tenant, shard)}t`
  }

  /** The copy of the tenant's settings in this user's slot. */
  settingsFor (ref: UserRef, tag = this.userTag(ref)): string {
    return `${tag}t`
  }

  /**
   * A user's hash, tenant settings and pending setup keys, tab-separated (a session's read-along
   * header); null when the prefix holds a tab or a newline (encoded ids never do). Built once per
   * user while at most READ_ALONG_NAMES users are remembered (the gate checks them every request).
   */
  readAlongNames (ref: UserRef): string | null {
    if (!this.#headerSafe) return null
    let byId = this.#names.get(ref.tenant)
    let names = byId?.get(ref.userId)
    if (names !== undefined) return names
    if (this.#named >= READ_ALONG_NAMES) {
      this.#names.clear()
      this.#named = 0
      byId = undefined
    }
    if (byId === undefined) this.#names.set(ref.tenant, byId = new Map())
    const tag = this.userTag(ref)
    names = `${this.user(ref, tag)}\t${this.settingsFor(ref, tag)}\t${this.pending(ref, tag)}`
    byId.set(ref.userId, names)
    this.#named++
    return names
  }

  ip (ip: string): string {
    return `${this.prefix}ip:${enc(ip)}`
  }
}
