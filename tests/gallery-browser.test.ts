import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createGalleryServer, type GalleryServer } from "../src/gallery/server.ts";
import { launchBrowser, newPage, pngSize, recordWebm, runAxe } from "./support/browser.ts";
import { createTestDatabase, databaseKinds } from "./support/db.ts";
import { EXPECTED_TABS, XSS_PROMPT, seedGallery } from "./support/gallery-fixtures.ts";
import { createTestStorage, storageKinds } from "./support/pipeline-fixtures.ts";

// The gallery page in a real browser (Debian's chromium through playwright-core), on both
// databases and both storage providers: one browser for the file, one server per
// combination, a fresh browser context per test. What depends on the database or the
// storage (tabs, media, details) runs on each combination; what is the page's own
// (filters and paging UI, escaping, the traversal answer, keyboard, axe, screenshots) runs
// once, on the embedded database with local storage, to keep the file's time modest (the
// HTTP tests in gallery.test.ts cover the filters' SQL and traversal on every combination).
// GENSTORE_SCREENSHOTS=<dir> keeps the screenshots (docs/gallery.png comes from there).

let browser: Browser;
let video: Buffer;

beforeAll(async () => {
  browser = await launchBrowser();
  video = await recordWebm(browser);
});
afterAll(async () => {
  await browser?.close();
});

// Each database and each storage provider at least once, in as few servers as that takes
// (embedded + local, PostgreSQL + S3): the browser sees the same page either way, and
// gallery.test.ts runs every combination over HTTP.
const combos = storageKinds.map((storage, i) => ({ db: databaseKinds[i % databaseKinds.length]!, storage }));

describe.each(combos)("the gallery page on $db with $storage storage", ({ db: dbKind, storage: storageKind }) => {
  let base: string;
  let gallery: GalleryServer;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const database = await createTestDatabase(dbKind, { cleanup: "manual" });
    const { storage, cleanup } = await createTestStorage(storageKind);
    await seedGallery(database.db, storage, video);
    gallery = await createGalleryServer({ db: database.db, storage, pageSize: 4 });
    base = await gallery.listen(0, "127.0.0.1");
    drop = async () => {
      await database.drop();
      await cleanup();
    };
  });
  afterAll(async () => {
    await gallery?.close();
    await drop?.();
  });

  /** A fresh page on the gallery, once its first grid and counts are in. */
  async function open(query = "", options: Parameters<typeof newPage>[1] = {}): Promise<Page> {
    const { context, page } = await newPage(browser, options);
    onCleanup(() => context.close());
    await page.goto(`${base}/${query}`);
    await settled(page);
    return page;
  }

  it("switches tabs and shows the right rows, with and without operationType", async () => {
    const page = await open();
    expect(await cardIds(page)).toEqual(EXPECTED_TABS.all.slice(0, 4));
    expect(await tabCounts(page)).toEqual({ all: "9", generated: "5", edited: "1", upscaled: "2", videos: "1" });

    await page.getByRole("link", { name: /^Edited/ }).click();
    await expect.poll(() => cardIds(page)).toEqual(EXPECTED_TABS.edited);
    expect(new URL(page.url()).searchParams.get("tab")).toBe("edited");
    expect(await page.getByRole("link", { name: /^Edited/ }).getAttribute("aria-current")).toBe("page");
    // No operationType: the prompt prefix decides, and the page says so.
    expect(await badgesOf(page, "edit-prompt")).toContain("Edited · from prompt");

    await page.getByRole("link", { name: /^Upscaled/ }).click();
    await expect.poll(() => cardIds(page)).toEqual(EXPECTED_TABS.upscaled);
    // The column wins over an [EDITED] prompt.
    expect(await badgesOf(page, "upscale-col-wins")).toContain("Upscaled");
    expect(await badgesOf(page, "processing")).toContain("Upscaled · from prompt");

    await page.getByRole("link", { name: /^Videos/ }).click();
    await expect.poll(() => cardIds(page)).toEqual(EXPECTED_TABS.videos);
    await page.getByRole("link", { name: /^Generated/ }).click();
    await expect.poll(() => cardIds(page)).toEqual(EXPECTED_TABS.generated.slice(0, 4));

    await page.goBack();
    await expect.poll(() => cardIds(page)).toEqual(EXPECTED_TABS.videos);
  });

  it("loads an image and its thumbnail, and plays a video", async () => {
    const page = await open("?tab=generated&user=alice");
    const thumbnail = page.locator('[data-id="gen-col"] img');
    await expect.poll(() => thumbnail.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBe(256);
    expect(await thumbnail.getAttribute("src")).toBe("/media/gen-col/thumbnails/generated/alice/gen-col_0.webp");

    await page.locator('[data-id="gen-col"]').getByRole("button", { name: "Details" }).click();
    const output = page.locator("dialog .previews img").first();
    await expect.poll(() => output.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBe(640);

    const videos = await open("?tab=videos");
    const player = videos.locator('[data-id="video-col"] video');
    const played = await player.evaluate(async (v: HTMLVideoElement) => {
      await v.play();
      while (v.currentTime === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      return { paused: v.paused, currentTime: v.currentTime, width: v.videoWidth };
    });
    expect(played).toMatchObject({ paused: false, width: 160 });
    expect(played.currentTime).toBeGreaterThan(0);
  });

  it("shows every field in the detail view, and the rows with problems clearly", async () => {
    const page = await open("?id=edit-prompt");
    const dialog = page.getByRole("dialog");
    await expect.poll(() => dialog.isVisible()).toBe(true);
    const text = (await dialog.innerText()).replace(/\s+/g, " ");
    for (const expected of [
      "Generation edit-prompt",
      "[EDITED] the same fox, now blue",
      "edit → edited/ · read from the prompt prefix (the row has no operationType)",
      "succeeded",
      "p1editprompt",
      "black-forest-labs/flux-schnell",
      "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637",
      "userId source prediction-input",
      "Created 2026-11-20 10:01:00 UTC",
      "Completed 2026-11-20 10:01:04 UTC",
      "edited/alice/edit-prompt_0.png output",
      "thumbnails/edited/alice/edit-prompt_0.webp thumbnail",
      '"note": "row edit-prompt"',
    ])
      expect(text).toContain(expected);
    expect(text).toMatch(/edit-prompt_0\.png output \d+\.\d KiB \([\d,]+ bytes\) present/);

    await page.keyboard.press("Escape");
    await expect.poll(() => dialog.isVisible()).toBe(false);
    await expect.poll(() => new URL(page.url()).searchParams.has("id")).toBe(false);

    const all = await open("?status=");
    await all.getByRole("button", { name: "Load more" }).click();
    await all.getByRole("button", { name: "Load more" }).click();
    await expect.poll(() => cardIds(all)).toEqual(EXPECTED_TABS.all);
    expect(await cardText(all, "failed")).toContain("NSFW content detected");
    expect(await cardText(all, "failed")).toContain("Failed");
    expect(await cardText(all, "processing")).toContain("Still processing");
    expect(await badgesOf(all, "expired")).toContain("output expired");
    expect(await badgesOf(all, "missing")).toContain("missing in storage");
    expect(await badgesOf(all, "upscale-col-wins")).toContain("no thumbnail");

    const missing = await open("?id=missing");
    await expect.poll(() => missing.getByRole("dialog").isVisible()).toBe(true);
    expect((await missing.locator("dialog table.keys").innerText()).replace(/\s+/g, " ")).toContain(
      "generated/dave/missing_0.png output 1.2 KiB (1,234 bytes) missing",
    );
  });

  // The page's own behaviour: once.
  if (dbKind !== "embedded" || storageKind !== "local") return;

  it("says when the counts it shows were counted, once they are a few seconds old", async () => {
    const page = await open();
    // The server keeps counts for 10 s (and answers older ones while it counts again).
    await expect
      .poll(
        async () => {
          await page.reload();
          await settled(page);
          return page.locator("#summary").textContent();
        },
        { timeout: 60_000, interval: 500 },
      )
      .toMatch(/^Showing 4 of 9, newest first; counts as of \d\d:\d\d:\d\d\.$/);
  });

  it("pages with Load more, and filters by user, status and dates held in the URL", async () => {
    const page = await open();
    const more = page.getByRole("button", { name: "Load more" });
    await more.click();
    await expect.poll(() => cardIds(page)).toEqual(EXPECTED_TABS.all.slice(0, 8));
    await more.click();
    await expect.poll(() => cardIds(page)).toEqual(EXPECTED_TABS.all);
    expect(await more.isHidden()).toBe(true);
    // Counts a few seconds old say when they were counted (the next test).
    expect(await page.locator("#summary").textContent()).toMatch(
      /^Showing 9 of 9, newest first(; counts as of \d\d:\d\d:\d\d)?\.$/,
    );

    await page.getByLabel("User").fill("alice");
    await page.getByRole("button", { name: "Apply" }).click();
    await expect.poll(() => cardIds(page)).toEqual(["edit-prompt", "gen-col"]);
    expect(new URL(page.url()).searchParams.get("user")).toBe("alice");
    await expect.poll(() => tabCounts(page)).toMatchObject({ all: "2", edited: "1", generated: "1", videos: "0" });

    // A shared URL opens the same view.
    const shared = await open("?tab=generated&status=failed");
    expect(await cardIds(shared)).toEqual(["failed"]);
    expect(await shared.getByLabel("Status").inputValue()).toBe("failed");

    await shared.getByLabel("Status").selectOption("");
    await shared.getByLabel("From (UTC)").fill("2026-11-20");
    await shared.getByLabel("To (UTC, included)").fill("2026-11-20");
    await shared.getByRole("button", { name: "Apply" }).click();
    await expect.poll(() => cardIds(shared)).toEqual(EXPECTED_TABS.generated.slice(0, 4));
    expect(new URL(shared.url()).searchParams.get("since")).toBe("2026-11-20");
    await shared.getByLabel("To (UTC, included)").fill("2026-11-19");
    await shared.getByRole("button", { name: "Apply" }).click();
    await expect.poll(() => shared.locator("#summary").textContent()).toBe("No generations match.");

    await shared.getByRole("button", { name: "Clear" }).click();
    await expect.poll(() => cardIds(shared)).toEqual(EXPECTED_TABS.generated.slice(0, 4));
    expect(new URL(shared.url()).search).toBe("?tab=generated");
  });

  it("renders the XSS prompt as text, with the Content-Security-Policy out of the way", async () => {
    // bypassCSP: only the page's own escaping stands between the prompt and a script.
    const { context, page } = await newPage(browser, { bypassCSP: true });
    onCleanup(() => context.close());
    const alerts: string[] = [];
    page.on("dialog", (dialog) => {
      alerts.push(dialog.message());
      void dialog.dismiss();
    });
    await page.goto(`${base}/?user=eve&id=xss`);
    await settled(page);
    await expect.poll(() => page.getByRole("dialog").isVisible()).toBe(true);
    expect(await page.locator('[data-id="xss"] h3').textContent()).toBe(XSS_PROMPT);
    expect(await page.locator("dialog .prompt-full").textContent()).toBe(XSS_PROMPT);
    expect(await page.locator("dialog pre").textContent()).toContain('"note": "<script>alert(2)</script>"');
    expect(await page.locator('img[src="x"], script:not([src])').count()).toBe(0);
    expect(alerts).toEqual([]);
  });

  it("answers a traversal key with 404", async () => {
    const page = await open();
    for (const target of [
      "/media/gen-col/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
      "/media/gen-col/..%2f..%2f..%2fetc%2fpasswd",
      "/media/gen-col/generated/alice/..%5c..%5c..%5cetc%5cpasswd",
    ]) {
      const response = await page.goto(`${base}${target}`);
      expect(response?.status(), target).toBe(404);
      expect(await page.content()).not.toContain("root:");
    }
  });

  it("reaches every control with the keyboard, and opens and closes a detail with it", async () => {
    const page = await open();
    const controls = await page.evaluate(() => {
      const all = document.querySelectorAll<HTMLElement>(
        "a[href], button, input:not([type=hidden]), select, video[controls], [tabindex='0']",
      );
      return [...all]
        .filter((el) => el.offsetParent !== null && !el.closest("dialog"))
        .map((el, i) => {
          el.dataset.control = String(i);
          return `${el.tagName.toLowerCase()}:${(el.textContent ?? "").trim().slice(0, 20) || el.getAttribute("name") || ""}`;
        });
    });
    const reached = new Set<string>();
    for (let i = 0; i < controls.length * 3 && reached.size < controls.length; i++) {
      await page.keyboard.press("Tab");
      const id = await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.control);
      if (id !== undefined) reached.add(id);
    }
    const missed = controls.filter((_name, i) => !reached.has(String(i)));
    expect(missed).toEqual([]);
    expect(controls.length).toBeGreaterThan(15);

    const details = page.locator('[data-id="xss"] button.details');
    await details.focus();
    await page.keyboard.press("Enter");
    await expect.poll(() => page.getByRole("dialog").isVisible()).toBe(true);
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("detail-close");
    await page.keyboard.press("Escape");
    await expect.poll(() => page.getByRole("dialog").isVisible()).toBe(false);
    expect(await details.evaluate((el) => el === document.activeElement)).toBe(true);
  });

  it("has no serious accessibility violation (axe-core), in the grid or the detail", async () => {
    // axe is injected as a script: the page's CSP (rightly) refuses it otherwise.
    const { context, page } = await newPage(browser, { bypassCSP: true });
    onCleanup(() => context.close());
    await page.goto(`${base}/`);
    await settled(page);
    const serious = (violations: Awaited<ReturnType<typeof runAxe>>) =>
      violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    expect(serious(await runAxe(page))).toEqual([]);
    await page.goto(`${base}/?id=video-col`);
    await settled(page);
    await expect.poll(() => page.getByRole("dialog").isVisible()).toBe(true);
    expect(serious(await runAxe(page))).toEqual([]);
  });

  it("comes out at 1280×800 and 390×844 without sideways scrolling", async () => {
    for (const [width, height] of [
      [1280, 800],
      [390, 844],
    ] as const) {
      const page = await open("", { width, height });
      await page.getByRole("button", { name: "Load more" }).click();
      await expect.poll(() => cardIds(page)).toEqual(EXPECTED_TABS.all.slice(0, 8));
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.evaluate(() => Promise.all([...document.images].map((img) => img.decode().catch(() => {}))));
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(width);
      const png = await page.screenshot();
      expect(pngSize(png)).toEqual({ width, height });
      const keep = process.env.GENSTORE_SCREENSHOTS;
      if (keep && dbKind === "embedded" && storageKind === "local") {
        await mkdir(keep, { recursive: true });
        await writeFile(path.join(keep, `gallery-${width}x${height}.png`), png);
      }
    }
  });
});

const cleanups: (() => Promise<unknown>)[] = [];
function onCleanup(fn: () => Promise<unknown>) {
  cleanups.push(fn);
}
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((fn) => fn().catch(() => {})));
});

/** Waits until the grid's first page and the tab counts are on the page. */
async function settled(page: Page): Promise<void> {
  await page.waitForFunction(
    () =>
      document.querySelector("#grid")?.getAttribute("aria-busy") !== "true" &&
      (document.querySelector("#summary")?.textContent ?? "") !== "" &&
      document.querySelector(".tabs .count")?.textContent !== "",
  );
}

function cardIds(page: Page): Promise<string[]> {
  return page.locator("#grid > li").evaluateAll((cards) => cards.map((card) => (card as HTMLElement).dataset.id!));
}

async function badgesOf(page: Page, id: string): Promise<string[]> {
  return page.locator(`[data-id="${id}"] .badge`).allTextContents();
}

async function cardText(page: Page, id: string): Promise<string> {
  return (await page.locator(`[data-id="${id}"]`).innerText()).replace(/\s+/g, " ");
}

async function tabCounts(page: Page): Promise<Record<string, string>> {
  return page
    .locator(".tabs a")
    .evaluateAll((links) =>
      Object.fromEntries(
        links.map((a) => [(a as HTMLElement).dataset.tab, a.querySelector(".count")?.textContent ?? ""]),
      ),
    );
}
