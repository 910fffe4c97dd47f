package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
)

// Bounds of control commands, so that a command always gets its answer line.
const (
	// quickTimeout bounds dial, echo, ping and the small-stream commands.
	quickTimeout = 30 * time.Second
	// identifyTimeout is how long identify waits for the exchange (README: at most 10 s).
	identifyTimeout = 10 * time.Second
	// dataTimeout bounds the bulk commands (streams, bulk, sink, source, perf).
	dataTimeout = 5 * time.Minute
	// untilErrorTimeout is write-until-error's and read-until-error's limit (README: 30 s).
	untilErrorTimeout = 30 * time.Second
)

// halfCloseSize is what halfclose and reset send, in bytes.
const halfCloseSize = 1024

// readUntilErrorAsk is the count read-until-error asks the source for: 2^62 bytes.
const readUntilErrorAsk = uint64(1) << 62

// errTimeout is the answer of the -until-error commands when nothing failed in time.
var errTimeout = errors.New("timeout")

// runControl answers commands from in, one line each on out, until EOF or quit.
func runControl(h host.Host, ids *identifyWatch, in io.Reader, out io.Writer) {
	scanner := bufio.NewScanner(in)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	for scanner.Scan() {
		line := strings.TrimSuffix(scanner.Text(), "\r")
		if line == "quit" {
			return
		}
		answer, err := command(h, ids, strings.Split(line, " "))
		if err != nil {
			log.Printf("%q: %v", line, err)
			answer = "err " + oneLine(err.Error())
		} else if answer == "" {
			answer = "ok"
		} else {
			answer = "ok " + answer
		}
		if _, err := fmt.Fprintln(out, answer); err != nil {
			return
		}
	}
}

func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

// command runs one command; the answer is without the leading "ok".
func command(h host.Host, ids *identifyWatch, words []string) (string, error) {
	args := words[1:]
	need := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %d arguments, got %d", words[0], n, len(args))
		}
		return nil
	}
	if words[0] == "dial" {
		if err := need(1); err != nil {
			return "", err
		}
		return dial(h, args[0])
	}
	// Every other command starts with PEER.
	if len(args) == 0 {
		return "", fmt.Errorf("unknown command or missing PEER: %q", strings.Join(words, " "))
	}
	p, err := peer.Decode(args[0])
	if err != nil {
		return "", fmt.Errorf("PEER %q: %w", args[0], err)
	}
	size := func(i int) (uint64, error) {
		n, err := strconv.ParseUint(args[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: argument %q: %w", words[0], args[i], err)
		}
		return n, nil
	}
	switch words[0] {
	case "echo":
		if err := need(1); err != nil {
			return "", err
		}
		ctx, cancel := context.WithTimeout(context.Background(), quickTimeout)
		defer cancel()
		reply, err := echo(ctx, h, p)
		if err != nil {
			return "", err
		}
		return hex.EncodeToString(reply), nil
	case "ping":
		if err := need(1); err != nil {
			return "", err
		}
		return pingOnce(h, p)
	case "identify":
		if err := need(1); err != nil {
			return "", err
		}
		return ids.report(h, p)
	case "streams":
		if err := need(3); err != nil {
			return "", err
		}
		n, err := size(1)
		if err != nil {
			return "", err
		}
		sz, err := size(2)
		if err != nil {
			return "", err
		}
		return "", streams(h, p, n, sz)
	case "bulk", "sink", "source":
		if err := need(2); err != nil {
			return "", err
		}
		sz, err := size(1)
		if err != nil {
			return "", err
		}
		ctx, cancel := context.WithTimeout(context.Background(), dataTimeout)
		defer cancel()
		switch words[0] {
		case "bulk":
			return bulk(ctx, h, p, sz)
		case "sink":
			return sinkClient(ctx, h, p, sz)
		default:
			return sourceClient(ctx, h, p, sz)
		}
	case "halfclose", "reset":
		if err := need(1); err != nil {
			return "", err
		}
		ctx, cancel := context.WithTimeout(context.Background(), quickTimeout)
		defer cancel()
		return "", smallEcho(ctx, h, p, words[0] == "reset")
	case "write-until-error":
		if err := need(1); err != nil {
			return "", err
		}
		return writeUntilError(h, p)
	case "read-until-error":
		if err := need(1); err != nil {
			return "", err
		}
		return readUntilError(h, p)
	case "disconnect":
		if err := need(1); err != nil {
			return "", err
		}
		return "", h.Network().ClosePeer(p)
	case "connected":
		if err := need(1); err != nil {
			return "", err
		}
		return strconv.FormatBool(h.Network().Connectedness(p) == network.Connected), nil
	case "perf":
		if err := need(3); err != nil {
			return "", err
		}
		up, err := size(1)
		if err != nil {
			return "", err
		}
		down, err := size(2)
		if err != nil {
			return "", err
		}
		ctx, cancel := context.WithTimeout(context.Background(), dataTimeout)
		defer cancel()
		u, d, err := perfClient(ctx, h, p, up, down)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%.6f %.6f", u.Seconds(), d.Seconds()), nil
	default:
		return "", fmt.Errorf("unknown command %q", words[0])
	}
}

// stopOnCancel resets s if ctx ends first; call the returned function when done with s.
func stopOnCancel(ctx context.Context, s network.Stream) func() bool {
	return context.AfterFunc(ctx, func() { _ = s.Reset() })
}

func dial(h host.Host, target string) (string, error) {
	maddr, err := ma.NewMultiaddr(target)
	if err != nil {
		return "", err
	}
	info, err := peer.AddrInfoFromP2pAddr(maddr)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), quickTimeout)
	defer cancel()
	if err := h.Connect(ctx, *info); err != nil {
		return "", err
	}
	return info.ID.String(), nil
}

func pingOnce(h host.Host, p peer.ID) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), quickTimeout)
	defer cancel()
	select {
	case res, ok := <-ping.Ping(ctx, h, p):
		if !ok {
			return "", errors.New("ping: no result")
		}
		if res.Error != nil {
			return "", res.Error
		}
		return strconv.FormatInt(res.RTT.Microseconds(), 10), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// openStream opens a stream for protocol proto that is reset if ctx ends first.
func openStream(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID) (network.Stream, func() bool, error) {
	s, err := h.NewStream(ctx, p, proto)
	if err != nil {
		return nil, nil, fmt.Errorf("new %s stream: %w", proto, err)
	}
	return s, stopOnCancel(ctx, s), nil
}

// exchange writes size pattern bytes from offset start on s and closes the write side while
// it reads the echo into a checker; it returns the checker once both are done.
func exchange(s network.Stream, start, size uint64) (*patternChecker, error) {
	written := make(chan error, 1)
	go func() {
		if _, err := writePattern(s, start, size); err != nil {
			written <- fmt.Errorf("write: %w", err)
			return
		}
		if err := s.CloseWrite(); err != nil {
			written <- fmt.Errorf("close write: %w", err)
			return
		}
		written <- nil
	}()
	check := newPatternChecker(start)
	_, readErr := io.CopyBuffer(check, s, make([]byte, blockSize))
	if readErr != nil {
		_ = s.Reset() // unblocks the writer
	}
	if err := <-written; err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, fmt.Errorf("read after %d bytes: %w", check.n, readErr)
	}
	return check, check.check(size)
}

// streams opens n echo-all streams at once, then exchanges size bytes on all concurrently;
// stream k carries the pattern from offset k.
func streams(h host.Host, p peer.ID, n, size uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), dataTimeout)
	defer cancel()
	opened := make([]network.Stream, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for k := range opened {
		wg.Go(func() {
			s, stop, err := openStream(ctx, h, p, echoAllProtocol)
			if err != nil {
				errs[k] = err
				return
			}
			opened[k] = s
			context.AfterFunc(ctx, func() { stop() })
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range opened {
			if s != nil {
				_ = s.Reset()
			}
		}
		return err
	}
	for k, s := range opened {
		wg.Go(func() {
			defer s.Close()
			if _, err := exchange(s, uint64(k), size); err != nil {
				errs[k] = fmt.Errorf("stream %d: %w", k, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func bulk(ctx context.Context, h host.Host, p peer.ID, size uint64) (string, error) {
	s, stop, err := openStream(ctx, h, p, echoAllProtocol)
	if err != nil {
		return "", err
	}
	defer s.Close()
	defer stop()
	check, err := exchange(s, 0, size)
	if err != nil {
		return "", err
	}
	return check.sumHex(), nil
}

func sinkClient(ctx context.Context, h host.Host, p peer.ID, size uint64) (string, error) {
	s, stop, err := openStream(ctx, h, p, sinkProtocol)
	if err != nil {
		return "", err
	}
	defer s.Close()
	defer stop()
	want := patternSHA256(size)
	if _, err := writePattern(s, 0, size); err != nil {
		_ = s.Reset()
		return "", fmt.Errorf("write: %w", err)
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return "", fmt.Errorf("close write: %w", err)
	}
	answer, err := io.ReadAll(s)
	if err != nil {
		_ = s.Reset()
		return "", fmt.Errorf("read answer: %w", err)
	}
	if len(answer) != 40 {
		return "", fmt.Errorf("answer of %d bytes, expected 40", len(answer))
	}
	if n := binary.BigEndian.Uint64(answer); n != size {
		return "", fmt.Errorf("sink counted %d bytes, we wrote %d", n, size)
	}
	if !bytes.Equal(answer[8:], want) {
		return "", fmt.Errorf("sink hash %x, expected %x", answer[8:], want)
	}
	return hex.EncodeToString(want), nil
}

func sourceClient(ctx context.Context, h host.Host, p peer.ID, size uint64) (string, error) {
	s, stop, err := openStream(ctx, h, p, sourceProtocol)
	if err != nil {
		return "", err
	}
	defer s.Close()
	defer stop()
	if _, err := s.Write(binary.BigEndian.AppendUint64(nil, size)); err != nil {
		_ = s.Reset()
		return "", fmt.Errorf("write count: %w", err)
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return "", fmt.Errorf("close write: %w", err)
	}
	check := newPatternChecker(0)
	if _, err := io.CopyBuffer(check, s, make([]byte, blockSize)); err != nil {
		_ = s.Reset()
		return "", fmt.Errorf("read after %d bytes: %w", check.n, err)
	}
	if err := check.check(size); err != nil {
		return "", err
	}
	return check.sumHex(), nil
}

// smallEcho is halfclose (write, close write, read to EOF) or reset (write, read back, reset).
func smallEcho(ctx context.Context, h host.Host, p peer.ID, reset bool) error {
	s, stop, err := openStream(ctx, h, p, echoAllProtocol)
	if err != nil {
		return err
	}
	defer stop()
	if _, err := writePattern(s, 0, halfCloseSize); err != nil {
		_ = s.Reset()
		return fmt.Errorf("write: %w", err)
	}
	var got []byte
	if reset {
		got = make([]byte, halfCloseSize)
		if _, err := io.ReadFull(s, got); err != nil {
			_ = s.Reset()
			return fmt.Errorf("read back: %w", err)
		}
		if err := s.Reset(); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
	} else {
		if err := s.CloseWrite(); err != nil {
			_ = s.Reset()
			return fmt.Errorf("close write: %w", err)
		}
		if got, err = io.ReadAll(s); err != nil {
			_ = s.Reset()
			return fmt.Errorf("read to EOF: %w", err)
		}
		_ = s.Close()
	}
	if !bytes.Equal(got, patternAt(0, halfCloseSize)) {
		return fmt.Errorf("%d bytes came back, not the %d written", len(got), halfCloseSize)
	}
	return nil
}

// untilError runs f on a new stream for proto until it returns, resetting the stream after
// untilErrorTimeout; it reports whether the limit was hit.
func untilError(h host.Host, p peer.ID, proto protocol.ID, f func(network.Stream)) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), quickTimeout)
	defer cancel()
	s, stop, err := openStream(ctx, h, p, proto)
	if err != nil {
		return false, err
	}
	stop()
	var timedOut atomic.Bool
	timer := time.AfterFunc(untilErrorTimeout, func() {
		timedOut.Store(true)
		_ = s.Reset()
	})
	f(s)
	timer.Stop()
	_ = s.Reset()
	return timedOut.Load(), nil
}

func writeUntilError(h host.Host, p peer.ID) (string, error) {
	var written uint64
	timedOut, err := untilError(h, p, sinkProtocol, func(s network.Stream) {
		for {
			n, err := s.Write(patternAt(written, blockSize))
			written += uint64(n)
			if err != nil {
				log.Printf("write-until-error: %d bytes, then %v", written, err)
				return
			}
		}
	})
	if err != nil {
		return "", err
	}
	if timedOut {
		return "", errTimeout
	}
	return strconv.FormatUint(written, 10), nil
}

func readUntilError(h host.Host, p peer.ID) (string, error) {
	check := newPatternChecker(0)
	var how string
	timedOut, err := untilError(h, p, sourceProtocol, func(s network.Stream) {
		if _, err := s.Write(binary.BigEndian.AppendUint64(nil, readUntilErrorAsk)); err != nil {
			how = "error"
			return
		}
		_, err := io.CopyBuffer(check, s, make([]byte, blockSize))
		if err != nil {
			log.Printf("read-until-error: %d bytes, then %v", check.n, err)
			how = "error"
		} else {
			how = "eof"
		}
	})
	if err != nil {
		return "", err
	}
	if timedOut {
		return "", errTimeout
	}
	if check.bad != nil {
		return "", check.bad
	}
	return fmt.Sprintf("%d %s", check.n, how), nil
}

// identifyWatch keeps the latest identify result of every connection.
type identifyWatch struct {
	mu     sync.Mutex
	seq    uint64
	byConn map[network.Conn]identified
}

type identified struct {
	seq uint64
	evt event.EvtPeerIdentificationCompleted
}

// watchIdentify subscribes to go-libp2p's identify events (before any connection exists).
func watchIdentify(h host.Host) *identifyWatch {
	w := &identifyWatch{byConn: map[network.Conn]identified{}}
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		log.Fatalf("subscribe to identify events: %v", err)
	}
	go func() {
		for e := range sub.Out() {
			evt := e.(event.EvtPeerIdentificationCompleted)
			w.mu.Lock()
			w.seq++
			w.byConn[evt.Conn] = identified{seq: w.seq, evt: evt}
			for c := range w.byConn {
				if c.IsClosed() {
					delete(w.byConn, c)
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// latest is the newest identify result on an open connection to p.
func (w *identifyWatch) latest(h host.Host, p peer.ID) (event.EvtPeerIdentificationCompleted, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var best *identified
	for _, c := range h.Network().ConnsToPeer(p) {
		if id, ok := w.byConn[c]; ok && (best == nil || id.seq > best.seq) {
			best = &id
		}
	}
	if best == nil {
		return event.EvtPeerIdentificationCompleted{}, false
	}
	return best.evt, true
}

// identifyReport is the JSON answer of identify (README: "identify JSON").
type identifyReport struct {
	AgentVersion    string   `json:"agentVersion"`
	ProtocolVersion string   `json:"protocolVersion"`
	Protocols       []string `json:"protocols"`
	ListenAddrs     []string `json:"listenAddrs"`
	ObservedAddr    string   `json:"observedAddr"`
	PublicKeyType   string   `json:"publicKeyType"`
}

// report waits (at most identifyTimeout) until identify with p completed on an open
// connection and returns what it learned as one JSON line.
func (w *identifyWatch) report(h host.Host, p peer.ID) (string, error) {
	deadline := time.Now().Add(identifyTimeout)
	idService, _ := h.(interface{ IDService() identify.IDService })
	for {
		if evt, ok := w.latest(h, p); ok {
			return encodeReport(h, p, evt)
		}
		if time.Now().After(deadline) {
			if len(h.Network().ConnsToPeer(p)) == 0 {
				return "", fmt.Errorf("not connected to %s", p)
			}
			return "", fmt.Errorf("identify with %s did not complete in %v", p, identifyTimeout)
		}
		if idService != nil {
			for _, c := range h.Network().ConnsToPeer(p) {
				idService.IDService().IdentifyWait(c) // starts identify if it has not run
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func encodeReport(h host.Host, p peer.ID, evt event.EvtPeerIdentificationCompleted) (string, error) {
	r := identifyReport{
		AgentVersion:    evt.AgentVersion,
		ProtocolVersion: evt.ProtocolVersion,
		Protocols:       []string{},
		ListenAddrs:     []string{},
	}
	for _, proto := range evt.Protocols {
		r.Protocols = append(r.Protocols, string(proto))
	}
	slices.Sort(r.Protocols)
	for _, a := range evt.ListenAddrs {
		r.ListenAddrs = append(r.ListenAddrs, withoutP2p(a))
	}
	if evt.ObservedAddr != nil {
		r.ObservedAddr = evt.ObservedAddr.String()
	}
	key := evt.Conn.RemotePublicKey()
	if key == nil {
		key = h.Peerstore().PubKey(p)
	}
	if key != nil {
		r.PublicKeyType = key.Type().String()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// withoutP2p is a's text without a trailing /p2p/ component.
func withoutP2p(a ma.Multiaddr) string {
	transport, _ := peer.SplitAddr(a)
	if transport == nil {
		return a.String()
	}
	return transport.String()
}
