import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` serves the app on :5173 and sends API calls to a running gateway
// (AGENTBUS_GATEWAY_URL, default http://127.0.0.1:8080); `npm run build` writes dist/, which the
// gateway serves at `/` (same origin, so no CORS and no proxy in production).
const gateway = process.env.AGENTBUS_GATEWAY_URL ?? "http://127.0.0.1:8080";
const api = ["/api", "/threads", "/runs", "/assistants", "/info", "/ok"];

export default defineConfig({
  plugins: [react()],
  server: { proxy: Object.fromEntries(api.map((p) => [p, { target: gateway, changeOrigin: true }])) },
  build: { outDir: "dist", sourcemap: false, chunkSizeWarningLimit: 2000 },
});
