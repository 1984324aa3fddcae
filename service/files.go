package service

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// FileStore keeps files (report PDFs) by key. Local disk by default; object
// storage can take its place.
type FileStore interface {
	Put(ctx context.Context, key string, data []byte) error
	Open(ctx context.Context, key string) (io.ReadCloser, error)
}

// LocalFiles stores files under a directory.
type LocalFiles struct{ Dir string }

func (l LocalFiles) path(key string) (string, error) {
	if key == "" || strings.Contains(key, "..") || filepath.IsAbs(key) {
		return "", errors.New("bad file key")
	}
	return filepath.Join(l.Dir, filepath.FromSlash(key)), nil
}

// Put writes data at key atomically (temp file, then rename).
func (l LocalFiles) Put(_ context.Context, key string, data []byte) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// Open reads the file at key.
func (l LocalFiles) Open(_ context.Context, key string) (io.ReadCloser, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}
