// Package console holds the staff console: a Vue 3 + Element Plus app
// (its sources in src/, built by `npm run build` into dist/, which is
// committed) embedded in the binary and served at /.
package console

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Files are the built console, index.html at the root.
func Files() fs.FS {
	f, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the directory is embedded above
	}
	return f
}
