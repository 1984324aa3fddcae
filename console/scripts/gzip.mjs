// Gzips the built JS, CSS and HTML beside themselves (x.js.gz), so that
// careloop serves them compressed without compressing on each start.
// Deterministic: the same input gives the same bytes.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync, constants } from 'node:zlib'

function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) walk(p)
    else if (/\.(js|css|html|svg|json)$/.test(name)) {
      writeFileSync(p + '.gz', gzipSync(readFileSync(p), { level: constants.Z_BEST_COMPRESSION }))
    }
  }
}
walk(new URL('../dist/', import.meta.url).pathname)
