// js-libp2p 3.x test peer for Plait's interop suites. The command line, the protocols it serves
// and the control protocol are specified in ../README.md (shared with the go-libp2p peer); run
// `node peer.mjs --help` for a summary. stdout carries only the protocol (the listen address,
// the -d reply, control answers); every diagnostic goes to stderr.
//
// Exit codes: 0 success, 1 a failed operation, 2 a usage error.

import './lib/polyfill.mjs' // first: libp2p needs Promise.withResolvers on Node 20
import { writeFileSync } from 'node:fs'
import { isIPv4 } from 'node:net'
import { createInterface } from 'node:readline'
import { multiaddr } from '@multiformats/multiaddr'

// The libp2p modules load after the command line is checked (a usage error answers at once).
let privateKeyToProtobuf, peerIdFromPrivateKey, peerIdFromString, makeIdentity, TRANSPORTS, createNode, P
async function loadLibp2p () {
  ({ privateKeyToProtobuf } = await import('@libp2p/crypto/keys'));
  ({ peerIdFromPrivateKey, peerIdFromString } = await import('@libp2p/peer-id'));
  ({ makeIdentity } = await import('./lib/keys.mjs'));
  ({ TRANSPORTS, createNode } = await import('./lib/node.mjs'))
  P = await import('./lib/protocols.mjs')
}

const USAGE = `usage: node peer.mjs [-l PORT] [--host IP] [-d MULTIADDR] [--insecure] [--security LIST]
                    [--seed N] [--key TYPE] [--rsa-bits BITS] [--export-key PATH] [--perf] [--control]
  -l PORT            listen on /ip4/HOST/tcp/PORT (0: any free port); first stdout line: the address
  --host IP          IPv4 address to listen on (default 127.0.0.1)
  -d MULTIADDR       dial (…/p2p/PEERID), send "Hello, world!\\n" on /echo/1.0.0, print the reply
  --insecure         /plaintext/2.0.0 instead of Noise
  --security LIST    comma-separated, preference order; js-libp2p has only "noise" (no "tls")
  --seed N           deterministic identity (0: random)
  --key TYPE         rsa (default), ed25519, secp256k1 (js-libp2p has no ecdsa)
  --rsa-bits BITS    RSA modulus size, 2048..8192 (default 2048)
  --export-key PATH  write the private key (libp2p protobuf encoding) to PATH
  --perf             also serve /perf/1.0.0
  --control          read control commands from stdin (see tests/peers/README.md)`

const IDENTIFY_WAIT_MS = 10_000
const UNTIL_ERROR_MS = 30_000
const STREAM_LIMIT = 1000 // per protocol and connection (yamux's own default limit is 1000)

class UsageError extends Error {}

function log (msg) {
  process.stderr.write(`${msg}\n`)
}

// ------------------------------------------------------------------------ command line

function parseArgs (argv) {
  const a = {
    listen: null,
    host: '127.0.0.1',
    dial: null,
    security: ['noise'],
    insecure: false,
    seed: '0',
    key: 'rsa',
    rsaBits: 2048,
    exportKey: null,
    perf: false,
    control: false,
    help: false
  }
  const args = [...argv]
  while (args.length > 0) {
    let arg = args.shift()
    let inline = null
    // go's flag package accepts -name and --name, and -name=value: so do we
    const eq = arg.indexOf('=')
    if (arg.startsWith('-') && eq > 0) {
      inline = arg.slice(eq + 1)
      arg = arg.slice(0, eq)
    }
    const name = arg.replace(/^--?/, '')
    const value = () => {
      if (inline != null) return inline
      if (args.length === 0) throw new UsageError(`${arg} needs a value`)
      return args.shift()
    }
    switch (name) {
      case 'l':
      case 'listen': {
        const v = value()
        if (!/^\d+$/.test(v) || Number(v) > 65535) throw new UsageError(`bad port ${JSON.stringify(v)}`)
        a.listen = Number(v)
        break
      }
      case 'host': {
        const v = value()
        if (!isIPv4(v)) throw new UsageError(`bad IPv4 address ${JSON.stringify(v)}`)
        a.host = v
        break
      }
      case 'd':
      case 'dial': {
        const v = value()
        try {
          a.dial = multiaddr(v)
        } catch (err) {
          throw new UsageError(`bad multiaddr ${JSON.stringify(v)}: ${err.message}`)
        }
        if (a.dial.getComponents().at(-1)?.name !== 'p2p') {
          throw new UsageError('-d MULTIADDR must end in /p2p/PEERID')
        }
        break
      }
      case 'insecure':
        if (inline != null) throw new UsageError('--insecure takes no value')
        a.insecure = true
        break
      case 'security': {
        const list = value().split(',').map((s) => s.trim())
        for (const s of list) {
          if (s === 'tls') throw new UsageError('js-libp2p has no TLS security transport: --security may only list "noise"')
          if (s !== 'noise') throw new UsageError(`unknown security protocol ${JSON.stringify(s)} (known: tls, noise; js-libp2p has noise only)`)
        }
        a.security = [...new Set(list)]
        break
      }
      case 'seed': {
        const v = value()
        if (!/^\d+$/.test(v)) throw new UsageError(`bad seed ${JSON.stringify(v)} (a non-negative decimal integer)`)
        a.seed = BigInt(v).toString()
        break
      }
      case 'key': {
        const v = value().toLowerCase()
        if (v === 'ecdsa') throw new UsageError('js-libp2p does not support ECDSA identity keys (use rsa, ed25519 or secp256k1)')
        if (!['rsa', 'ed25519', 'secp256k1'].includes(v)) throw new UsageError(`unknown key type ${JSON.stringify(v)} (rsa, ed25519, secp256k1)`)
        a.key = v
        break
      }
      case 'rsa-bits': {
        const v = value()
        if (!/^\d+$/.test(v) || Number(v) < 2048 || Number(v) > 8192) throw new UsageError(`bad --rsa-bits ${JSON.stringify(v)} (2048..8192)`)
        a.rsaBits = Number(v)
        break
      }
      case 'export-key':
        a.exportKey = value()
        break
      case 'perf':
        a.perf = true
        break
      case 'control':
        a.control = true
        break
      case 'h':
      case 'help':
        a.help = true
        break
      default:
        throw new UsageError(`unknown argument ${JSON.stringify(arg)}`)
    }
  }
  // --insecure means /plaintext/2.0.0 only, whatever --security says (that list is still checked)
  if (a.insecure) a.security = ['plaintext']
  if (!a.help && a.listen == null && a.dial == null && !a.control) throw new UsageError('need -l, -d or --control')
  return a
}

// ------------------------------------------------------------------------ identify results

// The latest identify (or identify push) result per peer, with the connection it came over.
const identified = new Map()
const identifyWaiters = new Set()

const KEY_TYPE_NAMES = { 0: 'RSA', 1: 'Ed25519', 2: 'Secp256k1', 3: 'ECDSA' }

// The libp2p PublicKey protobuf: field 1 (varint) is the KeyType enum.
function publicKeyType (pubkeyProtobuf, peerId) {
  const b = pubkeyProtobuf
  if (b != null && b.length >= 2 && b[0] === 0x08 && b[1] < 0x80 && KEY_TYPE_NAMES[b[1]] != null) {
    return KEY_TYPE_NAMES[b[1]]
  }
  return { RSA: 'RSA', Ed25519: 'Ed25519', secp256k1: 'Secp256k1', ECDSA: 'ECDSA' }[peerId.type] ?? String(peerId.type)
}

function stripP2p (ma) {
  const s = ma.toString()
  const i = s.indexOf('/p2p/')
  return i >= 0 ? s.slice(0, i) : s
}

function onIdentify (evt) {
  const r = evt.detail
  const key = r.peerId.toString()
  const prev = identified.get(key)?.info
  // an identify push may carry only part of the record: keep what it does not restate
  const info = {
    agentVersion: r.agentVersion ?? prev?.agentVersion ?? '',
    protocolVersion: r.protocolVersion ?? prev?.protocolVersion ?? '',
    protocols: r.protocols.length > 0 || prev == null ? [...r.protocols].sort() : prev.protocols,
    listenAddrs: r.listenAddrs.length > 0 || prev == null ? r.listenAddrs.map(stripP2p) : prev.listenAddrs,
    observedAddr: r.observedAddr != null ? r.observedAddr.toString() : (prev?.observedAddr ?? ''),
    publicKeyType: publicKeyType(r.publicKey, r.peerId)
  }
  identified.set(key, { info, connection: r.connection })
  for (const w of identifyWaiters) w()
}

async function waitIdentify (node, peerId) {
  const key = peerId.toString()
  const deadline = Date.now() + IDENTIFY_WAIT_MS
  for (;;) {
    const e = identified.get(key)
    const open = node.getConnections(peerId).filter((c) => c.status === 'open')
    // a result from a connection that is gone is stale while there is a newer connection
    if (e != null && (e.connection.status === 'open' || open.length === 0)) return e.info
    const left = deadline - Date.now()
    if (left <= 0) {
      throw new Error(open.length === 0 ? 'not connected and never identified' : 'identify did not complete within 10 s')
    }
    await new Promise((resolve) => {
      const done = () => { clearTimeout(t); identifyWaiters.delete(done); resolve() }
      const t = setTimeout(done, Math.min(left, 250))
      identifyWaiters.add(done)
    })
  }
}

// ------------------------------------------------------------------------ control commands

function needArgs (words, n, usage) {
  if (words.length !== n + 1) throw new Error(`usage: ${usage}`)
}

function parseSize (s) {
  if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s))) throw new Error(`bad size ${JSON.stringify(s)}`)
  return Number(s)
}

function parsePeer (s) {
  try {
    return peerIdFromString(s)
  } catch (err) {
    throw new Error(`bad peer id ${JSON.stringify(s)}: ${err.message}`)
  }
}

function openStream (node, peerId, protocol) {
  return node.dialProtocol(peerId, protocol, { maxOutboundStreams: STREAM_LIMIT })
}

async function runCommand (node, words) {
  const cmd = words[0]
  switch (cmd) {
    case 'dial': {
      needArgs(words, 1, 'dial MULTIADDR')
      const conn = await node.dial(multiaddr(words[1]))
      return `ok ${conn.remotePeer}`
    }
    case 'echo': {
      needArgs(words, 1, 'echo PEER')
      const reply = await P.echoClient(await openStream(node, parsePeer(words[1]), P.ECHO))
      return `ok ${reply.toString('hex')}`
    }
    case 'ping': {
      needArgs(words, 1, 'ping PEER')
      const us = await P.pingClient(await openStream(node, parsePeer(words[1]), P.PING))
      return `ok ${us}`
    }
    case 'identify': {
      needArgs(words, 1, 'identify PEER')
      return `ok ${JSON.stringify(await waitIdentify(node, parsePeer(words[1])))}`
    }
    case 'streams': {
      needArgs(words, 3, 'streams PEER N SIZE')
      const peer = parsePeer(words[1])
      const n = parseSize(words[2])
      const size = parseSize(words[3])
      const opened = await Promise.allSettled(Array.from({ length: n }, () => openStream(node, peer, P.ECHO_ALL)))
      const failed = opened.find((r) => r.status === 'rejected')
      const streams = opened.filter((r) => r.status === 'fulfilled').map((r) => r.value)
      if (failed != null) {
        for (const s of streams) s.abort(failed.reason)
        throw failed.reason
      }
      try {
        await Promise.all(streams.map((s, k) => P.echoAllCheck(s, k, size)))
      } catch (err) {
        for (const s of streams) s.abort(err)
        throw err
      }
      return 'ok'
    }
    case 'bulk': {
      needArgs(words, 2, 'bulk PEER SIZE')
      const size = parseSize(words[2])
      return `ok ${await P.echoAllCheck(await openStream(node, parsePeer(words[1]), P.ECHO_ALL), 0, size)}`
    }
    case 'sink': {
      needArgs(words, 2, 'sink PEER SIZE')
      const size = parseSize(words[2])
      return `ok ${await P.sinkClient(await openStream(node, parsePeer(words[1]), P.SINK), size)}`
    }
    case 'source': {
      needArgs(words, 2, 'source PEER SIZE')
      const size = parseSize(words[2])
      return `ok ${await P.sourceClient(await openStream(node, parsePeer(words[1]), P.SOURCE), size)}`
    }
    case 'halfclose': {
      needArgs(words, 1, 'halfclose PEER')
      await P.halfcloseClient(await openStream(node, parsePeer(words[1]), P.ECHO_ALL))
      return 'ok'
    }
    case 'reset': {
      needArgs(words, 1, 'reset PEER')
      await P.resetClient(await openStream(node, parsePeer(words[1]), P.ECHO_ALL))
      return 'ok'
    }
    case 'write-until-error': {
      needArgs(words, 1, 'write-until-error PEER')
      const n = await P.writeUntilError(await openStream(node, parsePeer(words[1]), P.SINK), UNTIL_ERROR_MS)
      return `ok ${n}`
    }
    case 'read-until-error': {
      needArgs(words, 1, 'read-until-error PEER')
      const r = await P.readUntilError(await openStream(node, parsePeer(words[1]), P.SOURCE), UNTIL_ERROR_MS)
      return `ok ${r.bytes} ${r.how}`
    }
    case 'disconnect': {
      needArgs(words, 1, 'disconnect PEER')
      await node.hangUp(parsePeer(words[1]))
      return 'ok'
    }
    case 'connected': {
      needArgs(words, 1, 'connected PEER')
      const open = node.getConnections(parsePeer(words[1])).some((c) => c.status === 'open')
      return `ok ${open}`
    }
    case 'perf': {
      needArgs(words, 3, 'perf PEER UPLOAD DOWNLOAD')
      const peer = parsePeer(words[1])
      const up = parseSize(words[2])
      const down = parseSize(words[3])
      const [u, d] = await P.perfClient(await openStream(node, peer, P.PERF), up, down)
      return `ok ${u.toFixed(6)} ${d.toFixed(6)}`
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(cmd)}`)
  }
}

function answer (line) {
  process.stdout.write(`${line}\n`)
}

async function controlLoop (node) {
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false })
  for await (const raw of rl) {
    const line = raw.replace(/\r$/, '')
    const words = line.split(' ').filter((w) => w !== '')
    if (words.length === 0) {
      answer('err empty command')
      continue
    }
    if (words[0] === 'quit' && words.length === 1) return
    try {
      answer(await runCommand(node, words))
    } catch (err) {
      if (err instanceof P.TimeoutError) {
        answer('err timeout')
        continue
      }
      const msg = String(err?.message ?? err).replace(/\s+/g, ' ').trim() || String(err?.name ?? 'error')
      log(`${words[0]}: ${err?.stack ?? err}`)
      answer(`err ${msg}`)
    }
  }
}

// ------------------------------------------------------------------------ main

async function exit (node, code) {
  if (node != null) {
    await Promise.race([node.stop().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 2000))])
  }
  // stdout is a pipe or a file: writes are synchronous on Linux, nothing is pending
  process.exit(code)
}

async function main () {
  let args
  try {
    args = parseArgs(process.argv.slice(2))
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    log(`peer.mjs: ${err.message}\n${USAGE}`)
    process.exit(2)
  }
  if (args.help) {
    log(USAGE)
    process.exit(0)
  }

  process.on('unhandledRejection', (err) => log(`unhandled rejection: ${err?.stack ?? err}`))
  // the harness went away (EPIPE on stdout): nobody is left to answer
  process.stdout.on('error', () => process.exit(0))
  await loadLibp2p()

  const privateKey = await makeIdentity(args.key, args.seed, args.rsaBits)
  const peerId = peerIdFromPrivateKey(privateKey)
  if (args.exportKey != null) writeFileSync(args.exportKey, privateKeyToProtobuf(privateKey))

  const transports = ['tcp']
  let node
  try {
    node = await createNode({
      privateKey,
      transports,
      security: args.security,
      host: args.listen == null ? null : args.host,
      port: args.listen ?? 0,
      start: false
    })
    const opts = { maxInboundStreams: STREAM_LIMIT, maxOutboundStreams: STREAM_LIMIT }
    await node.handle(P.ECHO, P.echoHandler, opts)
    await node.handle(P.ECHO_ALL, P.echoAllHandler, opts)
    await node.handle(P.SINK, P.sinkHandler, opts)
    await node.handle(P.SOURCE, P.sourceHandler, opts)
    if (args.perf) await node.handle(P.PERF, P.perfHandler, opts)
    node.addEventListener('peer:identify', onIdentify)
    await node.start()
  } catch (err) {
    log(`peer.mjs: could not start: ${err?.stack ?? err}`)
    return exit(node, 1)
  }

  if (args.listen != null) {
    const t = TRANSPORTS[transports[0]]
    const addr = node.getMultiaddrs().find((ma) => ma.getComponents().some((c) => c.name === t.portProtocol))
    const port = addr?.getComponents().find((c) => c.name === t.portProtocol)?.value
    if (port == null) {
      log(`peer.mjs: no ${transports[0]} listen address (have ${node.getMultiaddrs().join(', ')})`)
      return exit(node, 1)
    }
    answer(`${t.listenAddr(args.host, port)}/p2p/${peerId}`)
    log(`js-libp2p test peer ${peerId} (${args.key}, ${args.security.join(',')}) listening; ` +
      `serving ${node.getProtocols().join(' ')}`)
  }

  if (args.dial != null) {
    try {
      const reply = await P.echoClient(await node.dialProtocol(args.dial, P.ECHO))
      process.stdout.write(reply)
    } catch (err) {
      log(`peer.mjs: echo to ${args.dial} failed: ${err?.stack ?? err}`)
      return exit(node, 1)
    }
    if (!args.control) return exit(node, 0)
  }

  if (args.control) {
    await controlLoop(node)
    return exit(node, 0)
  }
  // listen only: serve until killed
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => exit(node, 0))
}

main().catch((err) => {
  log(`peer.mjs: ${err?.stack ?? err}`)
  process.exit(1)
})
