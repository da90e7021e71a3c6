import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // genstore runs from node_modules as the Node package it is (its database drivers,
  // WebAssembly engines and sharp load the way Node loads them), not through the bundler.
  serverExternalPackages: ["genstore"],
  // A self-contained server in .next/standalone (node .next/standalone/server.js);
  // `next start` works too.
  output: "standalone",
};

export default nextConfig;
