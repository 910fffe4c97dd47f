// Spawns test peers (peer.mjs, or any binary with the same contract) and talks the control
// protocol of ../../README.md with them.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const PEER = fileURLToPath(new URL('../peer.mjs', import.meta.url))

export class ControlledPeer {
  /**
   * @param {string[]} args peer arguments; `cmd` defaults to node peer.mjs; the peer's stderr is
   * dropped unless PEER_TEST_STDERR is set
   */
  constructor (args, { cmd = [process.execPath, PEER], stderr = process.env.PEER_TEST_STDERR ? 'inherit' : 'ignore' } = {}) {
    this.proc = spawn(cmd[0], [...cmd.slice(1), ...args], { stdio: ['pipe', 'pipe', stderr] })
    this.lines = []
    this.waiters = []
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })))
    createInterface({ input: this.proc.stdout }).on('line', (l) => {
      const w = this.waiters.shift()
      if (w != null) w(l)
      else this.lines.push(l)
    })
    this.proc.stdout.on('end', () => { for (const w of this.waiters.splice(0)) w(null) })
  }

  nextLine (timeoutMs = 120_000) {
    if (this.lines.length > 0) return Promise.resolve(this.lines.shift())
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('timed out waiting for a stdout line')), timeoutMs)
      this.waiters.push((l) => { clearTimeout(t); resolve(l) })
    })
  }

  async cmd (line, timeoutMs) {
    this.proc.stdin.write(`${line}\n`)
    return this.nextLine(timeoutMs)
  }

  async quit () {
    this.proc.stdin.end('quit\n')
    return this.exited
  }

  kill () {
    this.proc.kill('SIGKILL')
    return this.exited
  }
}
