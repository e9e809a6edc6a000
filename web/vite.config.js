import { defineConfig } from 'vite';

// Everything is bundled: the dashboard works offline, with no CDN.
export default defineConfig({
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
  },
  server: {
    proxy: { '/api': 'http://127.0.0.1:9380', '/metrics': 'http://127.0.0.1:9380' },
  },
});
