package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"log"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Protocols the peer serves (README: "What a peer serves").
const (
	echoProtocol    protocol.ID = "/echo/1.0.0"
	echoAllProtocol protocol.ID = "/plait-test/echo-all/1.0.0"
	sinkProtocol    protocol.ID = "/plait-test/sink/1.0.0"
	sourceProtocol  protocol.ID = "/plait-test/source/1.0.0"
	perfProtocol    protocol.ID = "/perf/1.0.0"
)

// maxEchoLine is the longest line /echo/1.0.0 reads, in bytes.
const maxEchoLine = 64 << 10

// serve registers the inbound stream handlers; ping and identify are go-libp2p's own.
func serve(h host.Host, perf bool) {
	h.SetStreamHandler(echoProtocol, handle("echo", doEcho))
	h.SetStreamHandler(echoAllProtocol, handle("echo-all", echoAll))
	h.SetStreamHandler(sinkProtocol, handle("sink", sink))
	h.SetStreamHandler(sourceProtocol, handle("source", source))
	if perf {
		h.SetStreamHandler(perfProtocol, handle("perf", perfServe))
	}
}

// handle wraps a stream handler as the seed does: Close on success, Reset on error.
func handle(name string, f func(network.Stream) error) network.StreamHandler {
	return func(s network.Stream) {
		if err := f(s); err != nil {
			log.Printf("%s stream from %s: %v", name, s.Conn().RemotePeer(), err)
			_ = s.Reset()
			return
		}
		_ = s.Close()
	}
}

// doEcho is the seed's: read one line (at most maxEchoLine bytes), write it back.
func doEcho(s network.Stream) error {
	r := bufio.NewReaderSize(io.LimitReader(s, maxEchoLine), 4096)
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(line) == maxEchoLine {
			break // the longest line we read; echo it
		}
		return err
	}
	log.Printf("read: %q", line)
	_, err := s.Write(line)
	return err
}

// echoAll copies every byte back until EOF, then closes the write side.
func echoAll(s network.Stream) error {
	if _, err := io.CopyBuffer(s, s, make([]byte, blockSize)); err != nil {
		return err
	}
	return s.CloseWrite()
}

// sink reads to EOF, then answers the count (u64 big-endian) and the SHA-256 of what it read.
func sink(s network.Stream) error {
	h := sha256.New()
	n, err := io.CopyBuffer(h, s, make([]byte, blockSize))
	if err != nil {
		return err
	}
	answer := binary.BigEndian.AppendUint64(nil, uint64(n))
	answer = h.Sum(answer)
	if _, err := s.Write(answer); err != nil {
		return err
	}
	return s.CloseWrite()
}

// source reads a u64 big-endian count N, writes N pattern bytes and closes the write side.
func source(s network.Stream) error {
	var header [8]byte
	if _, err := io.ReadFull(s, header[:]); err != nil {
		return err
	}
	if _, err := writePattern(s, 0, binary.BigEndian.Uint64(header[:])); err != nil {
		return err
	}
	return s.CloseWrite()
}
