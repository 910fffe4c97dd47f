// peer.mjs --insecure driven by a hand-written client: multistream-select, /plaintext/2.0.0 and
// yamux frames built here, so the test decides how flags and payloads share frames.
import '../lib/polyfill.mjs'
import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, test } from 'node:test'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ControlledPeer } from './driver.mjs'

const SYN = 1
const ACK = 2
const FIN = 4
const RST = 8
const DATA = 0
const WINDOW_UPDATE = 1
const PING = 2

const varint = (n) => {
  const o = []
  while (n >= 0x80) { o.push((n & 0x7f) | 0x80); n >>>= 7 }
  o.push(n)
  return Buffer.from(o)
}
const lp = (b) => Buffer.concat([varint(b.length), b])
const ms = (s) => lp(Buffer.from(`${s}\n`))
const proposal = (p) => Buffer.concat([ms('/multistream/1.0.0'), ms(p)])
const pbField = (field, bytes) => Buffer.concat([Buffer.from([(field << 3) | 2]), varint(bytes.length), bytes])
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function frame (type, flags, id, payload = Buffer.alloc(0), length = payload.length) {
  const h = Buffer.alloc(12)
  h[1] = type
  h.writeUInt16BE(flags, 2)
  h.writeUInt32BE(id, 4)
  h.writeUInt32BE(length, 8)
  return Buffer.concat([h, payload])
}

class RawYamux {
  async connect (port) {
    this.sock = net.connect(port, '127.0.0.1')
    this.buf = Buffer.alloc(0)
    this.wake = null
    this.streams = new Map()
    this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.wake?.() })
    this.sock.on('error', () => {})
    const key = await generateKeyPair('Ed25519')
    this.sock.write(proposal('/plaintext/2.0.0'))
    await this.readLp(); await this.readLp()
    this.sock.write(lp(Buffer.concat([
      pbField(1, Buffer.from(peerIdFromPrivateKey(key).toMultihash().bytes)),
      pbField(2, Buffer.from(publicKeyToProtobuf(key.publicKey)))
    ])))
    await this.readLp()
    this.sock.write(proposal('/yamux/1.0.0'))
    await this.readLp(); await this.readLp()
    this.loop = this.readFrames()
    this.loop.catch(() => {})
  }

  async more () { await new Promise((resolve) => { this.wake = resolve }) }

  async readLp () {
    for (;;) {
      let len = 0
      let shift = 0
      let i = 0
      for (; i < this.buf.length; i++) {
        len |= (this.buf[i] & 0x7f) << shift
        shift += 7
        if (!(this.buf[i] & 0x80)) break
      }
      if (i < this.buf.length && this.buf.length >= i + 1 + len) {
        const m = this.buf.subarray(i + 1, i + 1 + len)
        this.buf = this.buf.subarray(i + 1 + len)
        return m
      }
      await this.more()
    }
  }

  async readFrames () {
    for (;;) {
      while (this.buf.length < 12) await this.more()
      const type = this.buf[1]
      const flags = this.buf.readUInt16BE(2)
      const id = this.buf.readUInt32BE(4)
      const len = this.buf.readUInt32BE(8)
      const dataLen = type === DATA ? len : 0
      while (this.buf.length < 12 + dataLen) await this.more()
      const data = this.buf.subarray(12, 12 + dataLen)
      this.buf = this.buf.subarray(12 + dataLen)
      if (type === PING && (flags & SYN)) this.sock.write(frame(PING, ACK, 0, Buffer.alloc(0), len))
      if (type === DATA || type === WINDOW_UPDATE) {
        const s = this.stream(id)
        s.data = Buffer.concat([s.data, data])
        s.frames.push({ type, flags, len })
        if (flags & FIN) s.fin = true
        if (flags & RST) s.rst = true
      }
    }
  }

  stream (id) {
    if (!this.streams.has(id)) this.streams.set(id, { data: Buffer.alloc(0), frames: [], fin: false, rst: false })
    return this.streams.get(id)
  }

  /** what came back after the two multistream-select lines */
  payload (id, protocol) {
    const s = this.stream(id)
    const head = proposal(protocol)
    assert.ok(s.data.subarray(0, head.length).equals(head), `stream ${id}: negotiation`)
    return s.data.subarray(head.length).toString('latin1')
  }

  async until (id, cond, ms = 3000) {
    const end = Date.now() + ms
    while (!cond(this.stream(id)) && Date.now() < end) await sleep(10)
    return this.stream(id)
  }
}

let peer
let raw
before(async () => {
  peer = new ControlledPeer(['-l', '0', '--insecure', '--key', 'ed25519'])
  const addr = await peer.nextLine()
  raw = new RawYamux()
  await raw.connect(Number(addr.split('/')[4]))
})
after(() => { raw?.sock.destroy(); peer?.kill() })

const ECHO_ALL = '/plait-test/echo-all/1.0.0'

test('echo-all: payload in the DATA frame that carries FIN is echoed', async () => {
  raw.sock.write(frame(DATA, SYN, 101, proposal(ECHO_ALL)))
  await raw.until(101, (s) => s.data.length >= proposal(ECHO_ALL).length)
  raw.sock.write(frame(DATA, FIN, 101, Buffer.from('payload with FIN')))
  const s = await raw.until(101, (s) => s.fin || s.rst)
  assert.equal(raw.payload(101, ECHO_ALL), 'payload with FIN')
  assert.ok(s.fin && !s.rst)
  // js-libp2p half-closes on a WindowUpdate of length 0, never on a DATA frame
  assert.deepEqual(s.frames.filter((f) => f.flags & FIN), [{ type: WINDOW_UPDATE, flags: FIN, len: 0 }])
})

test('echo-all: lazy proposal + payload, FIN in the next frame of the same write', async () => {
  raw.sock.write(Buffer.concat([
    frame(DATA, SYN, 103, Buffer.concat([proposal(ECHO_ALL), Buffer.from('lazy payload')])),
    frame(WINDOW_UPDATE, FIN, 103)
  ]))
  const s = await raw.until(103, (s) => s.fin || s.rst)
  assert.ok(s.fin && !s.rst)
  assert.equal(raw.payload(103, ECHO_ALL), 'lazy payload')
})

test('js-libp2p behaviour with FIN on a DATA frame (diagnostics only)', async (t) => {
  // lazy proposal + payload + FIN, all in the SYN frame: js-libp2p's multistream-select
  // listener resets the stream ("Cannot push data onto a stream that is closed")
  raw.sock.write(frame(DATA, SYN | FIN, 105, Buffer.concat([proposal(ECHO_ALL), Buffer.from('all at once')])))
  const s1 = await raw.until(105, (s) => s.fin || s.rst)
  t.diagnostic(`proposal+payload+FIN in one frame: ${s1.rst ? 'reset' : `echoed ${JSON.stringify(s1.data.toString('latin1'))}`}`)
  // js-libp2p's own ping handler (for await over the stream) loses the 32 bytes of a FIN frame
  raw.sock.write(frame(DATA, SYN, 107, proposal('/ipfs/ping/1.0.0')))
  await raw.until(107, (s) => s.data.length >= proposal('/ipfs/ping/1.0.0').length)
  raw.sock.write(frame(DATA, FIN, 107, Buffer.alloc(32, 7)))
  const s2 = await raw.until(107, (s) => s.fin || s.rst)
  t.diagnostic(`ping with its 32 bytes on the FIN frame: ${s2.data.length - proposal('/ipfs/ping/1.0.0').length} bytes answered`)
})
