package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// perfZeros is the content of every perf write: 64 KiB blocks (the perf digest, shared/specs/perf.md §3).
var perfZeros = make([]byte, blockSize)

// writeZeros writes n zero bytes in blocks of perfZeros.
func writeZeros(w io.Writer, n uint64) error {
	for n > 0 {
		m := uint64(len(perfZeros))
		if n < m {
			m = n
		}
		if _, err := w.Write(perfZeros[:m]); err != nil {
			return err
		}
		n -= m
	}
	return nil
}

// perfServe is the perf server (perf digest §1): read the 8-byte count, drain to EOF, only then
// send that many bytes, close. Any error resets the stream (handle does that).
func perfServe(s network.Stream) error {
	var header [8]byte
	if _, err := io.ReadFull(s, header[:]); err != nil {
		return fmt.Errorf("perf header: %w", err)
	}
	if _, err := io.CopyBuffer(io.Discard, s, make([]byte, blockSize)); err != nil {
		return fmt.Errorf("perf upload: %w", err)
	}
	if err := writeZeros(s, binary.BigEndian.Uint64(header[:])); err != nil {
		return fmt.Errorf("perf download: %w", err)
	}
	return s.CloseWrite()
}

// perfClient runs one perf client run on a new stream: header, upload, half-close, download to
// EOF. It fails unless exactly download bytes arrive. The upload time runs from after the
// header to the half-close; the download time from there to EOF (as rust-libp2p's client).
func perfClient(ctx context.Context, h host.Host, p peer.ID, upload, download uint64) (time.Duration, time.Duration, error) {
	s, err := h.NewStream(ctx, p, perfProtocol)
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	defer stopOnCancel(ctx, s)()
	if _, err := s.Write(binary.BigEndian.AppendUint64(nil, download)); err != nil {
		_ = s.Reset()
		return 0, 0, fmt.Errorf("write header: %w", err)
	}
	start := time.Now()
	if err := writeZeros(s, upload); err != nil {
		_ = s.Reset()
		return 0, 0, fmt.Errorf("upload: %w", err)
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return 0, 0, fmt.Errorf("close write: %w", err)
	}
	uploaded := time.Now()
	n, err := io.CopyBuffer(io.Discard, s, make([]byte, blockSize))
	if err != nil {
		_ = s.Reset()
		return 0, 0, fmt.Errorf("download after %d bytes: %w", n, err)
	}
	if uint64(n) != download {
		return 0, 0, fmt.Errorf("expected to receive %d bytes, got %d", download, n)
	}
	return uploaded.Sub(start), time.Since(uploaded), nil
}
