import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { compareKeys } from "../src/core/keys.ts";
import { createLocalStorage, walks } from "../src/storage/local.ts";
import type { ObjectInfo, Storage } from "../src/storage/types.ts";
import { tempDir } from "./support/pipeline-fixtures.ts";

// doctor's local listings (keys and sizes, no etags) come from GNU find piped into sort, and
// every other listing from the walk in this process: both must give the same keys, sizes
// and order, which the merge with the rows' keys depends on. On a tree made to trip a line
// sort: names that are prefixes of others, "-" before "/", non-ASCII, provider files,
// symlinks, and names with a tab, a control character, a newline or bytes that are not UTF-8.

async function listing(storage: Storage, prefix: string): Promise<Array<[string, number]>> {
  const keys: Array<[string, number]> = [];
  for await (const page of storage.listPages(prefix, { etags: false, pageSize: 3 }))
    keys.push(...page.map((o: ObjectInfo) => [o.key, o.size] as [string, number]));
  return keys;
}

function file(root: string, name: string | Buffer, bytes: number): void {
  const full = typeof name === "string" ? path.join(root, name) : Buffer.concat([Buffer.from(`${root}/`), name]);
  if (typeof full === "string") mkdirSync(path.dirname(full), { recursive: true });
  writeFileSync(full, Buffer.alloc(bytes, 1));
}

describe("local listings with find and sort (doctor's) and with the walk agree", () => {
  it("gives the same keys, sizes and order on a clean tree, and lists it with find", async () => {
    const root = await tempDir("genstore-find-");
    const names = [
      "generated/u1/a.png",
      "generated/u1/a-b.png",
      "generated/u1-x/c.png",
      "generated/u1/b/c.png",
      "generated/u10/d.png",
      "edited/é/1.png",
      "edited/e/1.png",
      "edited/日本/1.png",
      "edited/😀/1.png",
      "edited/\uffee/1.png",
      "thumbnails/generated/u1/a.webp",
      "k",
      "k-x",
      "k0/x",
      "with space/a b.png",
      "videos/u1/v.mp4",
    ];
    names.forEach((name, i) => file(root, name, i * 7));
    file(root, "generated/u1/.a.png.meta.json", 5); // provider files are not objects
    file(root, ".hidden/inside.png", 5);
    file(root, "generated/.x.partial", 5);
    symlinkSync(path.join(root, "k"), path.join(root, "link-to-file"));
    symlinkSync(path.join(root, "generated"), path.join(root, "link-to-folder"));

    const byFind = createLocalStorage(root);
    const byWalk = createLocalStorage(root, { walker: "node" });
    const expected = names.map((n, i) => [n, i * 7] as [string, number]).sort((a, b) => compareKeys(a[0], b[0]));
    for (const prefix of ["", "generated/", "generated/u1/", "edited/", "absent/"]) {
      const before = { ...walks };
      const found = await listing(byFind, prefix);
      expect(walks.find - before.find, `${prefix}: listed by find`).toBe(1);
      expect(walks.node - before.node).toBe(0);
      expect(found, prefix).toEqual(await listing(byWalk, prefix));
      expect(found, prefix).toEqual(expected.filter(([key]) => key.startsWith(prefix)));
    }
    // A partial last segment ("generated/u1" matches u1/, u1-x/ and u10/) is the walk's.
    const before = walks.node;
    expect(await listing(byFind, "generated/u1")).toEqual(await listing(byWalk, "generated/u1"));
    expect(walks.node - before).toBe(2);
  });

  it("hands over to the walk at a name a line sort orders differently, losing and repeating nothing", async () => {
    const root = await tempDir("genstore-find-odd-");
    const names: Array<string | Buffer> = [
      "0/1",
      "0/2",
      "0/3",
      "0/4", // a page and more of find's before the odd names (pages of 3)
      "a/k",
      "a/k\u0001x", // sorts before "a/k" as a line ("\u0001" < "\t")
      "a/k\tx",
      "a/k\nx",
      "a/kz",
      "b/1",
      "b/2",
    ];
    names.forEach((name, i) => file(root, name, i));
    file(root, "c/é", 4);
    file(root, Buffer.from([0x63, 0x2f, 0x80, 0x41]), 3); // "c/" + a byte that is not UTF-8 + "A"
    file(root, "c/z", 5);

    const before = { ...walks };
    const byFind = await listing(createLocalStorage(root), "");
    expect(walks.find - before.find).toBe(0); // find's listing did not finish: the walk did
    expect(walks.node - before.node).toBe(1);
    const byWalk = await listing(createLocalStorage(root, { walker: "node" }), "");
    expect(byFind).toEqual(byWalk);
    expect(byFind.map(([key]) => key)).toEqual([
      "0/1",
      "0/2",
      "0/3",
      "0/4",
      "a/k",
      "a/k\u0001x",
      "a/k\tx",
      "a/k\nx",
      "a/kz",
      "b/1",
      "b/2",
      "c/z",
      "c/é",
      // The name that is not UTF-8 is no key: neither lists it (its decoded name names no file).
    ]);
  });

  it("lists with the walk where find cannot run (no GNU find on PATH)", async () => {
    const root = await tempDir("genstore-find-missing-");
    file(root, "generated/u1/a.png", 3);
    const path_ = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      const before = { ...walks };
      expect(await listing(createLocalStorage(root), "")).toEqual([["generated/u1/a.png", 3]]);
      expect(walks.node - before.node).toBe(1);
      expect(walks.find - before.find).toBe(0);
    } finally {
      process.env.PATH = path_;
    }
  });
});
