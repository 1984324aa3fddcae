import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// The console is served by the Go binary at /, its hashed assets under
// /assets/ (cached for a year); the dev server proxies the API to a
// running careloop.
export default defineConfig({
  plugins: [vue()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    chunkSizeWarningLimit: 900,
    // No inline script or style: the Content-Security-Policy forbids them.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
  },
  server: { proxy: { '/api': 'http://localhost:8080' } },
})
