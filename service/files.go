package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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

// Open reads the file at key (fs.ErrNotExist when there is none).
func (f DBFiles) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	var chunks []model.FileChunk
	if err := f.DB.Conn(ctx).Where("`key` = ?", key).Order("seq").Find(&chunks).Error; err != nil {
		return nil, err
	}
	if len(chunks) == 0 {
		return nil, fmt.Errorf("file %s: %w", key, fs.ErrNotExist)
	}
	var buf bytes.Buffer
	for _, c := range chunks {
		buf.Write(c.Data)
	}
	return io.NopCloser(&buf), nil
}

// Delete removes the file's chunks.
func (f DBFiles) Delete(ctx context.Context, key string) error {
	return f.DB.Conn(ctx).Where("`key` = ?", key).Delete(&model.FileChunk{}).Error
}
