import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The build lands in the Python package, where `domicile serve` serves it from
// (domicile/console/static, not committed: `make console` builds it).
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "../domicile/console/static",
    emptyOutDir: true,
    chunkSizeWarningLimit: 2500,
  },
});
