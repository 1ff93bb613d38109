// Summarises a .cpuprofile written by `npm run bench -- --profile`:
//   node --import tsx benchmarks/profile-summary.ts benchmarks/profiles/<file>.cpuprofile [top]
// prints self time by package/area and the top functions by self time.
import { readFileSync } from 'node:fs'

interface Node { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface Profile { nodes: Node[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

const file = process.argv[2]
if (file === undefined) throw new Error('usage: profile-summary.ts <file.cpuprofile> [top]')
const top = Number(process.argv[3] ?? 25)
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const self = new Map<number, number>()
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
const total = [...self.values()].reduce((a, b) => a + b, 0)

function area (url: string, name: string): string {
  if (url === '') return name === '(idle)' || name === '(program)' || name === '(garbage collector)' ? name : '(native)'
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (nm) return nm[1]
  const own = /\/(plugin|benchmarks)\/(.*)$/.exec(url)
  if (own) return `${own[1]}/${own[2]}`
  if (url.startsWith('node:')) return url.split('/')[0] + (url.includes('/') ? `/${url.split('/')[1]}` : '')
  return url
}

const areas = new Map<string, number>()
const fns = new Map<string, number>()
for (const [id, t] of self) {
  const n = byId.get(id)
  if (n === undefined) continue
  const a = area(n.callFrame.url, n.callFrame.functionName)
  areas.set(a, (areas.get(a) ?? 0) + t)
  const key = `${n.callFrame.functionName || '(anonymous)'}  ${a}:${n.callFrame.lineNumber + 1}`
  fns.set(key, (fns.get(key) ?? 0) + t)
}
const pct = (t: number): string => `${(100 * t / total).toFixed(1).padStart(5)} %`
const busy = total - (areas.get('(idle)') ?? 0)
console.log(`${file}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy`)
console.log('\nself time by area')
for (const [a, t] of [...areas].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`${pct(t)}  ${a}`)
console.log('\nself time by function')
for (const [f, t] of [...fns].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`${pct(t)}  ${f}`)
