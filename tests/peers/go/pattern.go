package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
)

// blockSize is the size of every bulk write (perf spec: go writes 64 KiB blocks).
const blockSize = 64 << 10

// patternPeriod is the period of the pattern: byte i is (i*31 + 7) mod 251.
const patternPeriod = 251

// patternTable holds the pattern from offset 0 for one block plus one period, so any block
// starting anywhere is a slice of it.
var patternTable = func() []byte {
	t := make([]byte, blockSize+patternPeriod)
	for i := range t {
		t[i] = byte((i*31 + 7) % patternPeriod)
	}
	return t
}()

// patternAt returns n <= blockSize pattern bytes starting at absolute offset off.
func patternAt(off uint64, n int) []byte {
	start := int(off % patternPeriod)
	return patternTable[start : start+n]
}

// writePattern writes size pattern bytes, starting at pattern offset start, in blocks of at
// most blockSize bytes; it returns how many bytes were written.
func writePattern(w io.Writer, start, size uint64) (uint64, error) {
	var done uint64
	for done < size {
		n := uint64(blockSize)
		if size-done < n {
			n = size - done
		}
		m, err := w.Write(patternAt(start+done, int(n)))
		done += uint64(m)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// patternChecker checks that bytes fed to it are the pattern from a start offset on, and
// hashes them.
type patternChecker struct {
	start uint64
	n     uint64
	hash  hash.Hash
	bad   error
}

func newPatternChecker(start uint64) *patternChecker {
	return &patternChecker{start: start, hash: sha256.New()}
}

// Write implements io.Writer; it never fails, the first mismatch is kept in bad.
func (c *patternChecker) Write(p []byte) (int, error) {
	c.hash.Write(p)
	rest := p
	for len(rest) > 0 && c.bad == nil {
		n := min(len(rest), blockSize)
		if want := patternAt(c.start+c.n, n); !bytes.Equal(rest[:n], want) {
			i := 0
			for rest[i] == want[i] {
				i++
			}
			c.bad = fmt.Errorf("byte %d is %d, the pattern has %d", c.n+uint64(i), rest[i], want[i])
		}
		c.n += uint64(n)
		rest = rest[n:]
	}
	if c.bad != nil {
		c.n += uint64(len(rest))
	}
	return len(p), nil
}

// check returns an error unless exactly size pattern bytes were fed.
func (c *patternChecker) check(size uint64) error {
	if c.bad != nil {
		return c.bad
	}
	if c.n != size {
		return fmt.Errorf("got %d bytes, expected %d", c.n, size)
	}
	return nil
}

func (c *patternChecker) sumHex() string {
	return fmt.Sprintf("%x", c.hash.Sum(nil))
}

// patternSHA256 is the SHA-256 of the first size pattern bytes.
func patternSHA256(size uint64) []byte {
	h := sha256.New()
	_, _ = writePattern(h, 0, size)
	return h.Sum(nil)
}
