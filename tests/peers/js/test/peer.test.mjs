// Self-test of peer.mjs as the harness uses it: child processes on loopback, the command line and
// the control protocol of ../../README.md. `npm test` runs it (about 15 s).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { PATTERN } from '../lib/pattern.mjs'
import { ControlledPeer, PEER } from './driver.mjs'

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const tmp = mkdtempSync(join(tmpdir(), 'plait-js-peer-'))
after(() => rmSync(tmp, { recursive: true, force: true }))

const SEED_42_IDS = {
  rsa: 'QmdQC9uQzeA1xG6JYGw4Sy3c9HtpZ8ydVjXoJWRexxwPzT',
  ed25519: '12D3KooWBk1rjiMffuFZRBxZ3B8SFsUjsqMUA1fgt2XUAmJs6NpZ',
  secp256k1: '16Uiu2HAmA7Q3m1Qk69EuTbVKs4fEx7CX2ZEAoe7XDWh5wTSBqi91'
}

function run (args) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [PEER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d) => { stdout += d })
    p.stderr.on('data', (d) => { stderr += d })
    p.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

function patternSha (size) {
  const h = createHash('sha256')
  for (let off = 0; off < size; off += 65536) {
    const len = Math.min(65536, size - off)
    h.update(PATTERN.subarray(off % 251, off % 251 + len))
  }
  return h.digest('hex')
}

test('usage errors exit 2 with a message on stderr and nothing on stdout', async () => {
  const cases = [
    ['--key', 'ecdsa', '-l', '0'],
    ['--security', 'tls', '-l', '0'],
    ['--security', 'noise,tls', '-l', '0'],
    ['--key', 'dsa', '-l', '0'],
    ['--rsa-bits', '1024', '-l', '0'],
    ['--insecure', '--security', 'tls', '-l', '0'],
    ['-l', '70000'],
    ['--bogus'],
    ['-d', '/ip4/127.0.0.1/tcp/1'],
    []
  ]
  await Promise.all(cases.map(async (args) => {
    const r = await run(args)
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}, stderr ${r.stderr}`)
    assert.equal(r.stdout, '', args.join(' '))
    assert.ok(r.stderr.length > 0, args.join(' '))
  }))
})

async function listenOnce (args) {
  const p = new ControlledPeer(['-l', '0', '--control', ...args])
  const addr = await p.nextLine()
  await p.quit()
  return addr.split('/p2p/')[1]
}

test('--seed gives the same peer id every run; --export-key writes that key', async () => {
  const runs = await Promise.all(['rsa', 'ed25519', 'secp256k1'].flatMap((key) => [1, 2].map(async (run) => {
    const path = join(tmp, `${key}-${run}.key`)
    const id = await listenOnce(['--key', key, '--seed', '42', '--export-key', path])
    const exported = peerIdFromPrivateKey(privateKeyFromProtobuf(readFileSync(path))).toString()
    return { key, id, exported }
  })))
  for (const key of ['rsa', 'ed25519', 'secp256k1']) {
    const [a, b] = runs.filter((r) => r.key === key)
    assert.equal(a.id, b.id, `${key}: two runs with --seed 42`)
    assert.equal(a.exported, a.id, `${key}: exported key`)
  }
  // pinned: the derivation must not change (the same N gives the same id on every machine)
  assert.deepEqual(Object.fromEntries(runs.map((r) => [r.key, r.id])), SEED_42_IDS)
  const other = await listenOnce(['--key', 'ed25519', '--seed', '43'])
  assert.notEqual(other, runs.find((r) => r.key === 'ed25519').id)
})

async function session (t, args, full) {
  const a = new ControlledPeer(['-l', '0', '--control', '--perf', ...args])
  const aAddr = await a.nextLine()
  const b = new ControlledPeer(['-l', '0', '--control', ...args])
  const bAddr = await b.nextLine()
  const aId = aAddr.split('/p2p/')[1]
  const bId = bAddr.split('/p2p/')[1]
  t.after(() => { a.kill(); b.kill() })
  const ok = async (peer, line, re = /^ok/) => {
    const answer = await peer.cmd(line)
    assert.match(answer, re, line)
    return answer
  }

  await ok(b, `dial ${aAddr}`, new RegExp(`^ok ${aId}$`))
  await ok(b, `echo ${aId}`, /^ok 48656c6c6f2c20776f726c64210a$/)
  await ok(b, `ping ${aId}`, /^ok \d+$/)
  const idA = JSON.parse((await ok(b, `identify ${aId}`)).slice(3))
  assert.match(idA.agentVersion, /^js-libp2p\//)
  assert.deepEqual(idA.protocols, [...idA.protocols].sort())
  for (const p of ['/echo/1.0.0', '/perf/1.0.0', '/plait-test/echo-all/1.0.0', '/plait-test/sink/1.0.0', '/plait-test/source/1.0.0', '/ipfs/ping/1.0.0', '/ipfs/id/1.0.0', '/ipfs/id/push/1.0.0']) {
    assert.ok(idA.protocols.includes(p), p)
  }
  assert.deepEqual(idA.listenAddrs, [aAddr.split('/p2p/')[0]])
  assert.match(idA.observedAddr, /^\/ip4\/127\.0\.0\.1\/tcp\/\d+/)
  const idB = JSON.parse((await ok(a, `identify ${bId}`)).slice(3))
  assert.ok(!idB.protocols.includes('/perf/1.0.0'))
  for (const id of [idA, idB]) {
    assert.equal(id.publicKeyType, { rsa: 'RSA', ed25519: 'Ed25519', secp256k1: 'Secp256k1' }[args[args.indexOf('--key') + 1]])
  }
  await ok(b, `connected ${aId}`, /^ok true$/)
  await ok(b, `halfclose ${aId}`, /^ok$/)
  await ok(b, `reset ${aId}`, /^ok$/)
  const bulk = full ? 16 << 20 : 1 << 20
  await ok(b, `bulk ${aId} ${bulk}`, new RegExp(`^ok ${patternSha(bulk)}$`))
  await ok(b, `bulk ${aId} 0`, new RegExp(`^ok ${patternSha(0)}$`))
  await ok(b, `streams ${aId} 100 4096`, /^ok$/)
  await ok(b, `sink ${aId} 1000003`, new RegExp(`^ok ${patternSha(1000003)}$`))
  await ok(b, `source ${aId} 1000003`, new RegExp(`^ok ${patternSha(1000003)}$`))
  await ok(b, `perf ${aId} 1048576 2097152`, /^ok \d+\.\d+ \d+\.\d+$/)
  await ok(b, `frobnicate ${aId}`, /^err /)
  await ok(b, 'echo notapeerid', /^err /)
  if (full) {
    // the other side disconnects while we write / read
    const w = b.cmd(`write-until-error ${aId}`)
    await sleep(500)
    await ok(a, `disconnect ${bId}`, /^ok$/)
    assert.match(await w, /^ok [1-9]\d*$/)
    await ok(b, `dial ${aAddr}`)
    const r = b.cmd(`read-until-error ${aId}`)
    await sleep(500)
    await ok(a, `disconnect ${bId}`, /^ok$/)
    assert.match(await r, /^ok [1-9]\d* error$/)
    await ok(b, `dial ${aAddr}`)
  }
  await ok(b, `disconnect ${aId}`, /^ok$/)
  await ok(b, `connected ${aId}`, /^ok false$/)
  assert.deepEqual(await b.quit(), { code: 0, signal: null })
  a.proc.stdin.end() // EOF on stdin: exit 0 too
  assert.deepEqual(await a.exited, { code: 0, signal: null })
}

test('control session: noise, ed25519', (t) => session(t, ['--key', 'ed25519'], true))
test('control session: plaintext, secp256k1', (t) => session(t, ['--insecure', '--key', 'secp256k1'], false))
test('control session: noise, rsa', (t) => session(t, ['--key', 'rsa'], false))

test('-d prints the echo reply verbatim; -d to nobody exits 1', async () => {
  const a = new ControlledPeer(['-l', '0', '--key', 'ed25519'])
  const addr = await a.nextLine()
  const r = await run(['-d', addr, '--key', 'ed25519'])
  a.kill()
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout, 'Hello, world!\n')
  await a.exited
  const dead = await run(['-d', addr, '--key', 'ed25519'])
  assert.equal(dead.code, 1)
  assert.equal(dead.stdout, '')
})
