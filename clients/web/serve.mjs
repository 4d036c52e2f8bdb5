// A small static server for dist/: files as they are, every other path (the sign-in callback
// /auth/callback among them) gets index.html, and /config.js tells the app where assistd is.
// Usage: node serve.mjs [--port 5173] [--host 127.0.0.1] [--api http://127.0.0.1:50051]
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
  ".svg": "image/svg+xml",
};

/** Starts serving `dir`; resolves to { url, close() } once listening. */
export async function startStaticServer({ port = 5173, host = "127.0.0.1", apiUrl = "http://127.0.0.1:50051", dir } = {}) {
  const root = resolve(dir ?? join(dirname(fileURLToPath(import.meta.url)), "dist"));
  const server = createServer(async (req, res) => {
    let path;
    try {
      path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    } catch {
      res.writeHead(400, { "content-type": "text/plain" });
      res.end("bad request path\n");
      return;
    }
    if (path === "/config.js") {
      res.writeHead(200, { "content-type": types[".js"], "cache-control": "no-store" });
      res.end(`window.ASSISTD_CONFIG = ${JSON.stringify({ apiUrl })};\n`);
      return;
    }
    const file = normalize(join(root, path));
    const inside = file.startsWith(root + "/") && extname(file) !== "";
    try {
      const body = await readFile(inside ? file : join(root, "index.html"));
      res.writeHead(200, { "content-type": types[inside ? extname(file) : ".html"] ?? "application/octet-stream", "cache-control": "no-store" });
      res.end(body);
    } catch {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found\n");
    }
  });
  await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, host, ok);
  });
  const addr = server.address();
  const url = `http://${host}:${typeof addr === "object" && addr ? addr.port : port}`;
  return {
    url,
    close: () => new Promise((ok) => { server.closeAllConnections(); server.close(() => ok(undefined)); }),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
  };
  const { url } = await startStaticServer({
    port: Number(arg("port", process.env.PORT ?? "5173")),
    host: arg("host", "127.0.0.1"),
    apiUrl: arg("api", process.env.ASSISTD_URL ?? "http://127.0.0.1:50051"),
  });
  console.log(`assistd web app on ${url} (talking to ${arg("api", process.env.ASSISTD_URL ?? "http://127.0.0.1:50051")})`);
}
