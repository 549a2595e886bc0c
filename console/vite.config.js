// The console is built into dist/ and served by the cityloop server at / (engine/api/console.py).
// `npm run dev` serves the sources with hot reload and sends API calls to a server on :8000.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    sourcemap: false,
    // bpmn-js, dmn-js and form-js are big by nature; each page loads only its own chunk.
    chunkSizeWarningLimit: 2500,
    reportCompressedSize: false,
  },
  server: {
    proxy: { '/api': 'http://127.0.0.1:8000', '/open311': 'http://127.0.0.1:8000' },
  },
});
