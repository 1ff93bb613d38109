import { crc32 } from 'node:zlib'
import type { UserRef } from './store.js'

// Encoded so that no tenant or user id can forge another's key or hash tag.
const enc = (s: string): string => /^[\w.@-]*$/.test(s) ? s : encodeURIComponent(s)

/**
 * Redis key layout. A user's keys share the hash tag `{tenant:shard}`, so each
 * user's scripts run on one cluster slot; the tenant's settings are copied into
 * every shard so the gate reads user and tenant in one command.
 */
export class KeyLayout {
  // a prefix with a tab or a newline cannot be named in a session's read-along header
  readonly #headerSafe: boolean

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
   * header); null when the prefix holds a tab or a newline (encoded ids never do).
   */
  readAlongNames (ref: UserRef): string | null {
    return this.#headerSafe ? this.readAlongNamesOf(this.user(ref)) : null
  }

  /** The same names, from the user's hash key (`user`): settings and pending share its tag and id. */
  readAlongNamesOf (userKey: string): string {
    const cut = userKey.lastIndexOf('}') + 1 // the tag's end: encoded ids hold no '}'
    const tag = userKey.slice(0, cut)
    return `${userKey}\t${tag}t\t${tag}p:${userKey.slice(cut + 2)}`
  }

  ip (ip: string): string {
    return `${this.prefix}ip:${enc(ip)}`
  }
}
