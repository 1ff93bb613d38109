// Bulk writes for seeding: commands encoded as RESP straight onto one socket, the way
// `redis-cli --pipe` does, without a client object or a promise per command. Only for
// commands whose replies are one line (+OK, :n, -ERR): SET, HSET, DEL...
import net from 'node:net'

const FLUSH_BYTES = 256 * 1024

export class RespPipe {
  readonly #socket: net.Socket
  #chunks: string[] = []
  #bytes = 0
  #sent = 0
  #answered = 0
  #errors: string[] = []
  #pending = ''
  #waiters: Array<() => void> = []
  #failed: Error | null = null

  private constructor (socket: net.Socket) {
    this.#socket = socket
    socket.setEncoding('latin1')
    socket.on('data', (data: string) => this.#read(data))
    socket.on('error', (err) => this.#fail(err))
    socket.on('close', () => this.#fail(new Error('Redis closed the connection')))
  }

  /** Connects to `redis://[user:password@]host:port[/db]`. */
  static async connect (url: string): Promise<RespPipe> {
    const u = new URL(url)
    if (u.protocol !== 'redis:') throw new Error(`RespPipe: only redis:// URLs (got ${u.protocol})`)
    const socket = net.connect(Number(u.port || 6379), u.hostname)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    socket.setNoDelay(true)
    const pipe = new RespPipe(socket)
    if (u.password !== '') {
      const password = decodeURIComponent(u.password)
      pipe.send(u.username !== '' ? ['AUTH', decodeURIComponent(u.username), password] : ['AUTH', password])
    }
    const db = u.pathname.slice(1)
    if (db !== '' && db !== '0') pipe.send(['SELECT', db])
    await pipe.sync()
    return pipe
  }

  /** Queues a command; arguments are ASCII (keys, base64, JSON of ASCII). */
  send (args: string[]): void {
    let out = `*${args.length}\r\n`
    for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`
    this.#chunks.push(out)
    this.#bytes += out.length
    this.#sent++
  }

  /** Writes what is queued; resolves when the socket can take more. */
  async flush (): Promise<void> {
    if (this.#failed) throw this.#failed
    if (this.#chunks.length === 0) return
    const data = this.#chunks.join('')
    this.#chunks = []
    this.#bytes = 0
    if (!this.#socket.write(data, 'utf8')) await new Promise((resolve) => this.#socket.once('drain', resolve))
  }

  /** Flushes when enough is queued. */
  async maybeFlush (): Promise<void> {
    if (this.#bytes >= FLUSH_BYTES) await this.flush()
  }

  /** Flushes and waits for every reply; throws on the first error reply. */
  async sync (): Promise<number> {
    await this.flush()
    while (this.#answered < this.#sent && this.#failed === null) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve))
    }
    if (this.#failed) throw this.#failed
    if (this.#errors.length > 0) {
      throw new Error(`Redis refused ${this.#errors.length} commands, e.g. ${this.#errors[0]}`)
    }
    return this.#sent
  }

  close (): void {
    this.#socket.removeAllListeners('close')
    this.#socket.end()
  }

  #read (data: string): void {
    const text = this.#pending + data
    let start = 0
    for (let end = text.indexOf('\r\n'); end >= 0; end = text.indexOf('\r\n', start)) {
      if (text[start] === '-' && this.#errors.length < 10) this.#errors.push(text.slice(start, end))
      this.#answered++
      start = end + 2
    }
    this.#pending = text.slice(start)
    if (this.#answered >= this.#sent) this.#wake()
  }

  #fail (err: Error): void {
    this.#failed ??= err
    this.#wake()
  }

  #wake (): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const w of waiters) w()
  }
}
