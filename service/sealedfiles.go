package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// SealedFiles seals the files of another store (report PDFs, chat images)
// in frames of sealedFrame bytes, so that neither the disk nor the
// database holds a file in clear and a large file is opened frame by frame.
// Files stored before sealing (no magic) are read as they are.
type SealedFiles struct {
	Inner  FileStore
	Sealer *Sealer
}

// sealedMagic starts a sealed file; frames follow, each its sealed length
// (4 bytes, big-endian) and the sealed bytes.
var sealedMagic = []byte("CLS1")

const sealedFrame = 64 << 10

// Put seals data frame by frame and stores it.
func (f SealedFiles) Put(ctx context.Context, key string, data []byte) error {
	var out bytes.Buffer
	out.Grow(len(data) + len(data)/sealedFrame*40 + 64)
	out.Write(sealedMagic)
	for off := 0; off == 0 || off < len(data); off += sealedFrame {
		sealed := f.Sealer.Seal(data[off:min(off+sealedFrame, len(data))])
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(sealed)))
		out.Write(n[:])
		out.Write(sealed)
	}
	return f.Inner.Put(ctx, key, out.Bytes())
}

// Open opens the file at key, unsealing it as it is read.
func (f SealedFiles) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := f.Inner.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(rc)
	head, err := br.Peek(len(sealedMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		rc.Close()
		return nil, err
	}
	if !bytes.Equal(head, sealedMagic) {
		return readCloser{Reader: br, Closer: rc}, nil // stored before sealing
	}
	_, _ = br.Discard(len(sealedMagic))
	return &unsealReader{src: br, closer: rc, sealer: f.Sealer}, nil
}

// Delete removes the file at key.
func (f SealedFiles) Delete(ctx context.Context, key string) error { return f.Inner.Delete(ctx, key) }

type readCloser struct {
	io.Reader
	io.Closer
}

// unsealReader opens a sealed file frame by frame.
type unsealReader struct {
	src    *bufio.Reader
	closer io.Closer
	sealer *Sealer
	buf    []byte
}

func (r *unsealReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		var n [4]byte
		if _, err := io.ReadFull(r.src, n[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, fmt.Errorf("sealed file: %w", err)
		}
		size := binary.BigEndian.Uint32(n[:])
		if size > 2*sealedFrame {
			return 0, errors.New("sealed file: frame too large")
		}
		frame := make([]byte, size)
		if _, err := io.ReadFull(r.src, frame); err != nil {
			return 0, fmt.Errorf("sealed file: %w", err)
		}
		plain, err := r.sealer.Open(frame)
		if err != nil {
			return 0, fmt.Errorf("sealed file: %w", err)
		}
		r.buf = plain
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *unsealReader) Close() error { return r.closer.Close() }

// Keys lists the stored files.
func (f SealedFiles) Keys(ctx context.Context, fn func(key string) error) error {
	return f.Inner.Keys(ctx, fn)
}

// Rotate re-seals, under the current key, every file stored in clear or
// sealed under another key; it returns how many it re-sealed.
func (f SealedFiles) Rotate(ctx context.Context) (int, error) {
	n := 0
	err := f.Inner.Keys(ctx, func(key string) error {
		rc, err := f.Inner.Open(ctx, key)
		if err != nil {
			return fmt.Errorf("rotate file %s: %w", key, err)
		}
		head := make([]byte, len(sealedMagic)+4+2)
		m, _ := io.ReadFull(rc, head)
		rc.Close()
		if m == len(head) && bytes.Equal(head[:len(sealedMagic)], sealedMagic) && head[len(head)-2] == sealedMark && head[len(head)-1] == f.Sealer.Current() {
			return nil // sealed under the current key
		}
		plain, err := f.Open(ctx, key)
		if err != nil {
			return fmt.Errorf("rotate file %s: %w", key, err)
		}
		data, err := io.ReadAll(plain)
		plain.Close()
		if err != nil {
			return fmt.Errorf("rotate file %s: %w (is its key in CARELOOP_DATA_KEYS?)", key, err)
		}
		if err := f.Put(ctx, key, data); err != nil {
			return fmt.Errorf("rotate file %s: %w", key, err)
		}
		n++
		return nil
	})
	return n, err
}
