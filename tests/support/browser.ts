// A real browser for the gallery's tests: Debian's chromium (.ci/run installs it), driven by
// playwright-core, which downloads nothing. One browser per test file; each test takes a
// fresh context (its own cookies and cache).
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

export const CHROMIUM = process.env.GENSTORE_TEST_CHROMIUM ?? "/usr/bin/chromium";

/**
 * Launches chromium headless, with nothing that reaches the network on its own. Playwright
 * gives every launch a fresh --user-data-dir of its own (a temp folder it removes on close).
 */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium), as .ci/run does.`,
    );
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export async function newPage(
  browser: Browser,
  options: { width?: number; height?: number; bypassCSP?: boolean } = {},
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({
    viewport: { width: options.width ?? 1280, height: options.height ?? 800 },
    bypassCSP: options.bypassCSP ?? false,
  });
  const page = await context.newPage();
  return { context, page };
}

/** Records about a second of an animated canvas as WebM with the browser's own encoder (no ffmpeg here). */
export async function recordWebm(browser: Browser): Promise<Buffer> {
  const { context, page } = await newPage(browser);
  try {
    await page.setContent("<canvas width=160 height=120></canvas>");
    const base64 = await page.evaluate(async () => {
      const canvas = document.querySelector("canvas")!;
      const ctx = canvas.getContext("2d")!;
      const stream = canvas.captureStream(25);
      const recorder = new MediaRecorder(stream, { mimeType: "video/webm;codecs=vp8" });
      const chunks: Blob[] = [];
      recorder.ondataavailable = (event) => chunks.push(event.data);
      const stopped = new Promise((resolve) => (recorder.onstop = resolve));
      recorder.start(100);
      for (let frame = 0; frame < 30; frame++) {
        ctx.fillStyle = `hsl(${frame * 12}, 70%, 45%)`;
        ctx.fillRect(0, 0, 160, 120);
        ctx.fillStyle = "#fff";
        ctx.fillRect(frame * 5, 50, 20, 20);
        await new Promise((resolve) => setTimeout(resolve, 40));
      }
      recorder.stop();
      await stopped;
      const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
      let binary = "";
      for (const byte of bytes) binary += String.fromCharCode(byte);
      return btoa(binary);
    });
    return Buffer.from(base64, "base64");
  } finally {
    await context.close();
  }
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

/** Runs axe-core (the npm package, injected into the page) and returns its violations. */
export async function runAxe(page: Page): Promise<AxeViolation[]> {
  const source = await readFile(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
  await page.addScriptTag({ content: source });
  return page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(): Promise<{ violations: AxeViolation[] }> } }).axe;
    const result = await axe.run();
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target })),
    }));
  });
}

/** Width and height of a PNG, from its header. */
export function pngSize(png: Buffer): { width: number; height: number } {
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}
