package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gorm.io/gorm"

	"careloop/model"
)

// FileStore keeps files (report PDFs, chat images) by key: in the database
// when careloop runs on MySQL (API instances stay stateless), on local disk
// in the embedded mode; object storage could take their place.
type FileStore interface {
	Put(ctx context.Context, key string, data []byte) error
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Delete removes the file at key; a missing file is no error.
	Delete(ctx context.Context, key string) error
	// Keys calls fn with every stored key.
	Keys(ctx context.Context, fn func(key string) error) error
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

// Delete removes the file at key.
func (l LocalFiles) Delete(_ context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Keys walks the directory.
func (l LocalFiles) Keys(_ context.Context, fn func(key string) error) error {
	err := filepath.WalkDir(l.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return err
		}
		rel, err := filepath.Rel(l.Dir, p)
		if err != nil {
			return err
		}
		return fn(filepath.ToSlash(rel))
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// DBFiles keeps files in the database, in chunks small enough for any
// max_allowed_packet, so that every instance serves what any instance wrote.
type DBFiles struct{ DB *model.DB }

const fileChunk = 512 << 10

// Put replaces the file at key, all chunks in one transaction.
func (f DBFiles) Put(ctx context.Context, key string, data []byte) error {
	if key == "" || len(key) > 191 {
		return errors.New("bad file key")
	}
	return f.DB.InTx(ctx, func(ctx context.Context) error {
		if err := f.DB.Conn(ctx).Where("`key` = ?", key).Delete(&model.FileChunk{}).Error; err != nil {
			return err
		}
		for seq := 0; seq == 0 || seq*fileChunk < len(data); seq++ {
			part := data[seq*fileChunk : min((seq+1)*fileChunk, len(data))]
			if err := f.DB.Conn(ctx).Create(&model.FileChunk{Key: key, Seq: seq, Data: part}).Error; err != nil {
				return err
			}
		}
		return nil
	})
}

// Open reads the file at key (fs.ErrNotExist when there is none), one
// chunk at a time: a large file is never held whole.
func (f DBFiles) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	var first model.FileChunk
	err := f.DB.Conn(ctx).Where("`key` = ? AND seq = 0", key).Take(&first).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, fmt.Errorf("file %s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("file %s: %w", key, err)
	}
	return &chunkReader{ctx: ctx, f: f, key: key, buf: first.Data}, nil
}

// chunkReader reads a DBFiles file chunk by chunk.
type chunkReader struct {
	ctx  context.Context
	f    DBFiles
	key  string
	seq  int
	buf  []byte
	done bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.done {
			return 0, io.EOF
		}
		r.seq++
		var c model.FileChunk
		err := r.f.DB.Conn(r.ctx).Where("`key` = ? AND seq = ?", r.key, r.seq).Take(&c).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			r.done = true
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("file %s chunk %d: %w", r.key, r.seq, err)
		}
		r.buf = c.Data
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *chunkReader) Close() error { return nil }

// Delete removes the file's chunks.
func (f DBFiles) Delete(ctx context.Context, key string) error {
	return f.DB.Conn(ctx).Where("`key` = ?", key).Delete(&model.FileChunk{}).Error
}

// Keys lists the stored files, a page at a time.
func (f DBFiles) Keys(ctx context.Context, fn func(key string) error) error {
	last := ""
	for {
		var keys []string
		if err := f.DB.Conn(ctx).Model(&model.FileChunk{}).Where("seq = 0 AND `key` > ?", last).Order("`key`").Limit(500).Pluck("key", &keys).Error; err != nil {
			return fmt.Errorf("list files: %w", err)
		}
		for _, k := range keys {
			if err := fn(k); err != nil {
				return err
			}
		}
		if len(keys) < 500 {
			return nil
		}
		last = keys[len(keys)-1]
	}
}
