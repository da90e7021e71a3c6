import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { constants, createReadStream, statSync, type Dir, type Stats } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { StringDecoder } from "node:string_decoder";
import pLimit from "p-limit";
import { compareKeys, contentTypeFor, storageKeyProblem } from "../core/keys.ts";
import { StorageError } from "../errors.ts";
import { IncompleteBodyError, ObjectExistsError, ObjectNotFoundError } from "./errors.ts";
import type { DeleteFailure, GetOptions, ListOptions, ObjectInfo, PutOptions, Storage } from "./types.ts";

// The local provider: key "a/b/c.png" is the file <root>/a/b/c.png.
//
// Beside each object sits a sidecar ".<name>.meta.json" with its md5 etag (computed while
// the body streams in) and the content type given to put. Hashing on every head would be
// cheap for images but not for videos, and list would have to hash the whole tree. The
// sidecar records the size, mtime and inode of the file it describes: when they no longer
// match (file replaced by hand, crash between the rename and the sidecar write), the etag
// is recomputed from the content and the sidecar rewritten. Without a stored content type
// it is inferred from the key's extension.
//
// Names starting with "." belong to the provider (sidecars, ".partial" temp files), so
// keys may not have segments starting with "." and list never shows such files.

/** A folder being walked: its entries as keys, sorted, and the index of the next one. */
interface Folder {
  folder: string;
  /** Its path on disk, with a trailing separator. */
  path: string;
  names: string[];
  next: number;
}

interface Sidecar {
  etag: string;
  size: number;
  mtimeMs: number;
  ino: number;
  contentType?: string;
}

/** A temp file untouched this long belongs to no write in flight (they fail after minutes without progress). */
export const STALE_TEMP_MS = 60 * 60_000;
/** Files deleteMany removes at once. */
const PARALLEL_DELETES = 16;

/**
 * Why key cannot be a local key (it could escape root or clash with our own files), or
 * undefined: the one rule every storage key obeys (src/core/keys.ts), which keeps each
 * segment well under the usual 255-byte name limit, with room for the sidecar and temp names.
 */
export function localKeyProblem(key: string): string | undefined {
  return storageKeyProblem(key);
}

export function createLocalStorage(root: string, options: { walker?: "find" | "node" } = {}): Storage {
  return new LocalStorage(path.resolve(root), options.walker);
}

/** How many listings find and sort finished, and how many the walk in this process did or finished (tests). */
export const walks = { find: 0, node: 0 };

/** Characters that make a name sort differently as find's line than as a key (see listWithFind). */
// eslint-disable-next-line no-control-regex -- the point is control characters
const UNSORTABLE = /[\u0000-\u0009\ufffd]/;

function existsSyncQuiet(file: string): boolean {
  try {
    statSync(file);
    return true;
  } catch {
    return false;
  }
}

class LocalStorage implements Storage {
  readonly provider = "local" as const;

  /**
   * How doctor's listings (keys and sizes, no etags) walk the folders: "find" with the
   * system's find and sort where they are GNU's (falling back to "node" elsewhere), "node"
   * always in this process (tests compare the two).
   */
  constructor(
    readonly bucket: string,
    private readonly walker: "find" | "node" = "find",
  ) {}

  private get where(): string {
    return `local storage ${this.bucket}`;
  }

  /** The file for key, after refusing any key that could leave root. */
  private fileFor(key: string): string {
    const problem = localKeyProblem(key);
    if (problem !== undefined) {
      throw new StorageError(`Refusing storage key ${JSON.stringify(key)}: it ${problem}.`);
    }
    return path.join(this.bucket, ...key.split("/"));
  }

  async put(key: string, body: Readable | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    try {
      return await this.write(key, body, options);
    } finally {
      if (body instanceof Readable) body.destroy(); // put owns the stream, refused or not
    }
  }

  private async write(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<ObjectInfo> {
    const file = this.fileFor(key);
    options.signal?.throwIfAborted();
    // Refuse early rather than after writing a whole video; link() below still decides.
    if (options.ifNoneMatch && (await this.statObject(key, file)) !== undefined)
      throw new ObjectExistsError(key, this.where);
    const temp = await this.createTemp(file, key);
    try {
      const written = await writeBody(temp.handle, body, options.signal, (error) => this.fsError("write", key, error));
      if (options.contentLength !== undefined && written.size !== options.contentLength) {
        throw new IncompleteBodyError(key, options.contentLength, written.size);
      }
      // Stat before the rename: the inode, size and mtime travel with the file, and a
      // concurrent put of the same key cannot slip its own file in between.
      const stat = await fs.stat(temp.path);
      await (options.ifNoneMatch ? this.linkNew(temp.path, file, key) : this.replace(temp.path, file, key));
      const sidecar = sidecarFrom(written.etag, stat, options.contentType);
      await writeSidecar(file, sidecar).catch(() => undefined); // head() rebuilds a missing sidecar
      return infoOf(key, sidecar, stat);
    } finally {
      await temp.handle.close().catch(() => undefined);
      await fs.rm(temp.path, { force: true });
    }
  }

  // The caller's measure of the source (CopyOptions) saves nothing here: a local copy
  // measures the file anyway, to write the target's sidecar.
  async copy(sourceKey: string, targetKey: string): Promise<ObjectInfo> {
    const sourceFile = this.fileFor(sourceKey);
    const targetFile = this.fileFor(targetKey);
    const source = await this.describe(sourceKey, sourceFile);
    if (source === undefined) throw new ObjectNotFoundError(sourceKey, this.where);
    const temp = await this.createTemp(targetFile, targetKey);
    await temp.handle.close();
    try {
      await this.guard("copy", sourceKey, () => fs.copyFile(sourceFile, temp.path, constants.COPYFILE_FICLONE));
      const after = await fs.stat(sourceFile).catch(() => undefined);
      // The sidecar's etag is only the copy's etag if the source did not change meanwhile.
      const etag = after && sameFile(source.stat, after) ? source.sidecar.etag : await md5OfFile(temp.path);
      const stat = await fs.stat(temp.path);
      await this.replace(temp.path, targetFile, targetKey);
      const sidecar = sidecarFrom(etag, stat, source.sidecar.contentType);
      await writeSidecar(targetFile, sidecar).catch(() => undefined);
      return infoOf(targetKey, sidecar, stat);
    } finally {
      await fs.rm(temp.path, { force: true });
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const found = await this.describe(key, this.fileFor(key));
    return found && infoOf(key, found.sidecar, found.stat);
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const file = this.fileFor(key);
    const handle = await fs.open(file, "r").catch((error: NodeJS.ErrnoException) => {
      if (isMissing(error)) throw new ObjectNotFoundError(key, this.where, error);
      throw this.fsError("read", key, error);
    });
    if (!(await handle.stat()).isFile()) {
      await handle.close();
      throw new ObjectNotFoundError(key, this.where);
    }
    return handle.createReadStream(options.range && { start: options.range.start, end: options.range.end });
  }

  /** Local objects have no URL of their own: the caller serves the file. */
  async downloadUrl(): Promise<undefined> {
    return undefined;
  }

  async delete(key: string): Promise<void> {
    const file = this.fileFor(key);
    try {
      await fs.unlink(file);
    } catch (error) {
      // A key that names a folder holds no object (unlink says EISDIR, or EPERM on macOS).
      const folder = await fs.lstat(file).then(
        (stat) => stat.isDirectory(),
        () => false,
      );
      if (!isMissing(error) && !folder) throw this.fsError("delete", key, error);
    }
    await fs.rm(sidecarPath(file), { force: true });
    await this.removeEmptyFolders(path.dirname(file));
  }

  async deleteMany(keys: string[]): Promise<DeleteFailure[]> {
    const failures: DeleteFailure[] = [];
    await pLimit(PARALLEL_DELETES).map(keys, async (key) => {
      try {
        await this.delete(key);
      } catch (error) {
        if (!(error instanceof StorageError)) throw error;
        failures.push({ key, error });
      }
    });
    return failures;
  }

  async *list(prefix = "", options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    for await (const page of this.listPages(prefix, options)) yield* page;
  }

  async *listPages(prefix = "", options: ListOptions = {}): AsyncIterable<ObjectInfo[]> {
    // Walking starts in the folder holding the prefix; a partial last segment
    // ("generated/us") is matched against names inside it. Memory holds the sorted entries
    // of the folders on the current path and one page, nothing more.
    const folder = prefix.slice(0, prefix.lastIndexOf("/") + 1);
    if (folder !== "") this.fileFor(folder.slice(0, -1));
    const pageSize = options.pageSize ?? 1000;
    // Keys and sizes only (doctor), of whole folders: the system's find and sort list them on
    // another core, with none of a stat's objects in this process.
    if (options.etags === false && options.startAfter === undefined && folder === prefix && this.walker === "find") {
      yield* this.listWithFind(folder, pageSize);
      return;
    }
    walks.node += 1;
    yield* this.walk(folder, prefix, options.startAfter, options.etags !== false, pageSize);
  }

  /**
   * The objects under folder, keys and sizes, in key order, from GNU find piped into
   * `LC_ALL=C sort -z` (byte order of UTF-8 keys, which is compareKeys'), connected by a
   * pipe that does not pass through this process. The walk in this process lists instead
   * when find or sort cannot run or do not understand (no GNU findutils: macOS, Windows),
   * and takes over after the last key listed at the first name a line sort orders
   * differently (a control character or a tab; not UTF-8, which decodes differently).
   */
  private async *listWithFind(folder: string, pageSize: number): AsyncGenerator<ObjectInfo[]> {
    const dir = path.join(this.bucket, ...folder.split("/"));
    // The same names the walk skips: provider files and folders (".…"), anything but files and folders.
    const find = spawn(
      "find",
      ["-H", dir, "-mindepth", "1", "-name", ".*", "-prune", "-o", "-type", "f", "-printf", "%P\\t%s\\0"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    // A bounded buffer: beyond it sort spills to temp files, so a million keys never sit in memory.
    const sort = spawn("sort", ["-z", "-S", "16M"], {
      stdio: [find.stdout, "pipe", "pipe"],
      env: { ...process.env, LC_ALL: "C" },
    });
    // sort has the pipe's reading end now; this process's copy would keep it open (and find's "close" from coming).
    find.stdout.destroy();
    const failed = { find: "", sort: "" };
    find.stderr.on("data", (chunk: Buffer) => (failed.find += chunk.toString()));
    sort.stderr.on("data", (chunk: Buffer) => (failed.sort += chunk.toString()));
    const exits = Promise.all([
      new Promise<number | null>((resolve) => find.on("exit", resolve).on("error", () => resolve(-1))),
      new Promise<number | null>((resolve) => sort.on("close", resolve).on("error", () => resolve(-1))),
    ]);
    /** The last key listed (the walk starts after it when it takes over). */
    let last: string | undefined;
    let page: ObjectInfo[] = [];
    let handOver = false;
    try {
      const decoder = new StringDecoder("utf8");
      let rest = "";
      reading: for await (const chunk of sort.stdout as AsyncIterable<Buffer>) {
        const lines = (rest + decoder.write(chunk)).split("\0");
        rest = lines.pop()!;
        for (const line of lines) {
          const tab = line.lastIndexOf("\t");
          const key = folder + line.slice(0, tab);
          // Such a name is one the sort put at most too early, never after a key it should
          // precede: every key listed before it is in place.
          if (UNSORTABLE.test(key) || (last !== undefined && compareKeys(last, key) >= 0)) {
            handOver = true;
            break reading;
          }
          last = key;
          page.push({ key, size: Number(line.slice(tab + 1)), etag: "" });
          if (page.length >= pageSize) {
            yield page;
            page = [];
          }
        }
      }
      const [findCode, sortCode] = handOver ? [0, 0] : await exits;
      if (findCode !== 0 || sortCode !== 0) {
        if (last !== undefined) {
          const why = (failed.find || failed.sort).trim().split("\n")[0] || `exit ${findCode ?? sortCode}`;
          throw new StorageError(`Cannot list ${folder || "/"} in ${this.where}: ${why}`);
        }
        // Nothing listed: an absent folder lists nothing (as the walk's); otherwise the walk
        // lists it (no GNU find, or a folder it cannot read, which the walk then reports).
        handOver = existsSyncQuiet(dir);
      }
    } finally {
      // Stopped early (a caller done, or a name handed over): no process is left behind.
      find.kill();
      sort.kill();
      await exits;
    }
    if (page.length > 0) yield page;
    if (!handOver) {
      walks.find += 1;
      return;
    }
    walks.node += 1;
    yield* this.walk(folder, folder, last, false, pageSize);
  }

  async check(): Promise<void> {
    const probe = path.join(this.bucket, `.genstore-check.${randomBytes(8).toString("hex")}.partial`);
    try {
      await fs.mkdir(this.bucket, { recursive: true });
      await fs.writeFile(probe, "");
      await fs.rm(probe);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "error";
      throw new StorageError(
        `Local storage folder ${this.bucket} is not a writable folder (${code}).`,
        "Check GENSTORE_HOME and the folder's permissions.",
        error,
      );
    }
  }

  /**
   * Removes the hidden `.partial` temp files that writes killed mid-way (SIGKILL, a crash)
   * left behind, and only those older than STALE_TEMP_MS: a write in flight, here or in
   * another process sharing the folder, touches its temp file as its bytes arrive, and fails
   * long before an hour without progress. Walks the tree one folder at a time.
   */
  async removeStaleTemps(now: Date = new Date()): Promise<number> {
    const cutoff = now.getTime() - STALE_TEMP_MS;
    let removed = 0;
    const folders = [this.bucket];
    while (folders.length > 0) {
      const folder = folders.pop()!;
      let dir: Dir;
      try {
        dir = await fs.opendir(folder);
      } catch (error) {
        if (isMissing(error)) continue;
        throw this.fsError("list", path.relative(this.bucket, folder) || "/", error);
      }
      for await (const entry of dir) {
        const file = path.join(folder, entry.name);
        if (entry.isDirectory()) folders.push(file);
        else if (entry.isFile() && entry.name.startsWith(".") && entry.name.endsWith(".partial")) {
          const stat = await fs.stat(file).catch(() => undefined);
          if (
            stat &&
            stat.mtimeMs < cutoff &&
            (await fs.rm(file, { force: true }).then(
              () => true,
              () => false,
            ))
          )
            removed += 1;
        }
      }
    }
    return removed;
  }

  async close(): Promise<void> {}

  // --- helpers -----------------------------------------------------------------------

  /** Opens a fresh temp file beside file, creating its folders (again, if a delete pruned them). */
  private async createTemp(file: string, key: string): Promise<{ path: string; handle: fs.FileHandle }> {
    const tempPath = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(8).toString("hex")}.partial`);
    for (let attempt = 1; ; attempt++) {
      try {
        await fs.mkdir(path.dirname(file), { recursive: true });
        return { path: tempPath, handle: await fs.open(tempPath, "wx") };
      } catch (error) {
        // A concurrent delete may remove the empty folder between mkdir and open.
        if (!isMissing(error) || attempt === 3) throw this.fsError("write", key, error);
      }
    }
  }

  /** Atomic replace: readers see the old object or the new one, never a partial one. */
  private async replace(temp: string, file: string, key: string): Promise<void> {
    await this.guard("write", key, () => fs.rename(temp, file));
  }

  /** Atomic create-if-absent: link() refuses an existing name, where rename() would replace it. */
  private async linkNew(temp: string, file: string, key: string): Promise<void> {
    try {
      await fs.link(temp, file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EEXIST" && (await fs.lstat(file)).isFile()) throw new ObjectExistsError(key, this.where, error);
      throw this.fsError("write", key, error);
    }
  }

  /** The file's sidecar, rebuilt from the content when missing or stale; undefined when there is no object. */
  private async statObject(key: string, file: string): Promise<Stats | undefined> {
    try {
      const stat = await fs.stat(file);
      return stat.isFile() ? stat : undefined;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw this.fsError("read", key, error);
    }
  }

  /** statObject without the thread pool (see walk). */
  private statObjectNow(key: string, file: string): Stats | undefined {
    try {
      const stat = statSync(file, { throwIfNoEntry: false });
      return stat?.isFile() ? stat : undefined;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw this.fsError("read", key, error);
    }
  }

  private async describe(key: string, file: string): Promise<{ sidecar: Sidecar; stat: Stats } | undefined> {
    const stat = await this.statObject(key, file);
    if (stat === undefined) return undefined;
    const stored = await readSidecar(file);
    if (stored && sameFile(stored, stat)) return { sidecar: stored, stat };
    const etag = await this.guard("read", key, () => md5OfFile(file));
    const sidecar = sidecarFrom(etag, stat, stored?.contentType);
    await writeSidecar(file, sidecar).catch(() => undefined);
    return { sidecar, stat };
  }

  /**
   * The objects under folder (a key prefix ending in "/" or ""), in key order, pageSize at a
   * time: one generator over a stack of folders (a generator per folder would pass each
   * object up through every level of the path, a promise per level). Without etags a file
   * is only stat'ed: a stat of a file whose folder was just read is a cached lookup, done
   * synchronously it costs a few microseconds, where a stat through the thread pool costs
   * several times that in scheduling (doctor lists millions of files).
   */
  private async *walk(
    folder: string,
    prefix: string,
    startAfter: string | undefined,
    etags: boolean,
    pageSize: number,
  ): AsyncGenerator<ObjectInfo[]> {
    const wantedFolder = (name: string) =>
      (name.startsWith(prefix) || prefix.startsWith(name)) &&
      (startAfter === undefined || compareKeys(name, startAfter) >= 0 || startAfter.startsWith(name));
    // The next folder is read while this one's files are stat'ed: readdir goes through the
    // thread pool, and waiting for each in turn left the walk idle a good part of the time.
    let ahead: { name: string; frame: Promise<Folder> } | undefined;
    const open = (name: string): Promise<Folder> => {
      const frame = ahead?.name === name ? ahead.frame : this.readFolder(name);
      ahead = undefined;
      return frame;
    };
    // The folder the walk opens next: the first one left in the deepest folder that has one.
    const readAhead = () => {
      for (let depth = stack.length - 1; depth >= 0; depth--) {
        const frame = stack[depth]!;
        for (let i = frame.next; i < frame.names.length; i++) {
          const name = frame.names[i]!;
          if (!name.endsWith("/") || !wantedFolder(name)) continue;
          const next = this.readFolder(name);
          next.catch(() => {}); // awaited when the walk gets there, or dropped when the caller stops early
          ahead = { name, frame: next };
          return;
        }
      }
    };
    const stack = [await this.readFolder(folder)];
    let page: ObjectInfo[] = [];
    while (stack.length > 0) {
      const frame = stack.at(-1)!;
      if (frame.next === frame.names.length) {
        stack.pop();
        continue;
      }
      const name = frame.names[frame.next++]!;
      if (name.endsWith("/")) {
        if (!wantedFolder(name)) continue;
        stack.push(await open(name));
        readAhead();
        continue;
      }
      if (!name.startsWith(prefix)) continue;
      if (startAfter !== undefined && compareKeys(name, startAfter) <= 0) continue;
      const file = frame.path + name.slice(frame.folder.length);
      let info: ObjectInfo | undefined;
      if (etags) {
        const found = await this.describe(name, file);
        info = found && infoOf(name, found.sidecar, found.stat);
      } else {
        const stat = this.statObjectNow(name, file);
        info = stat && { key: name, size: stat.size, etag: "" };
      }
      if (info === undefined) continue; // deleted meanwhile
      page.push(info);
      if (page.length >= pageSize) {
        yield page;
        page = [];
      }
    }
    if (page.length > 0) yield page;
  }

  /**
   * A folder's entries as keys, sorted: a folder sorts as "name/", which puts its keys
   * exactly where S3's key order has them ("a-b" < "a/c" because "-" < "/").
   */
  private async readFolder(folder: string): Promise<Folder> {
    const dir = path.join(this.bucket, ...folder.split("/"));
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch((error) => {
      if (isMissing(error)) return [];
      throw this.fsError("list", folder || "/", error);
    });
    const names = entries
      .filter((e) => !e.name.startsWith(".") && (e.isFile() || e.isDirectory()))
      .map((e) => folder + e.name + (e.isDirectory() ? "/" : ""))
      .sort(compareKeys);
    return { folder, path: dir + path.sep, names, next: 0 };
  }

  /** Removes folders emptied by a delete, up to (not including) root, as S3 has no folders. */
  private async removeEmptyFolders(folder: string): Promise<void> {
    while (folder !== this.bucket && folder.startsWith(this.bucket + path.sep)) {
      try {
        await fs.rmdir(folder);
      } catch {
        return; // not empty (or already gone): the folders above are not empty either
      }
      folder = path.dirname(folder);
    }
  }

  private async guard<T>(action: string, key: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw this.fsError(action, key, error);
    }
  }

  private fsError(action: string, key: string, error: unknown): Error {
    if (error instanceof StorageError) return error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === undefined) return error as Error; // not a file-system error: the body's own failure
    const reason =
      code === "ENOTDIR" || code === "EISDIR" || code === "EEXIST"
        ? `a file and a folder would share a name (${code}); local storage cannot hold both "a" and "a/b"`
        : `${code}: ${(error as Error).message}`;
    return new StorageError(`Cannot ${action} ${key} in ${this.where}: ${reason}.`, undefined, error);
  }
}

/**
 * Streams body into the open temp file, hashing as it goes. Failures of the file itself
 * go through fsError; the body's own failures (a broken download) are thrown unchanged.
 */
async function writeBody(
  handle: fs.FileHandle,
  body: Readable | Uint8Array,
  signal: AbortSignal | undefined,
  fsError: (error: unknown) => Error,
): Promise<{ etag: string; size: number }> {
  const hash = createHash("md5");
  let size = 0;
  // flush: fsync before the stream closes the file, so the rename never publishes a file
  // whose data is still only in the page cache.
  const sink = handle.createWriteStream({ flush: true });
  let sinkError: unknown;
  sink.on("error", (error) => (sinkError = error));
  try {
    await pipeline(
      body instanceof Uint8Array ? Readable.from([body]) : body,
      async function* (chunks: AsyncIterable<Uint8Array>) {
        for await (const chunk of chunks) {
          hash.update(chunk);
          size += chunk.byteLength;
          yield chunk;
        }
      },
      sink,
      { signal },
    );
  } catch (error) {
    throw error === sinkError ? fsError(error) : error;
  }
  return { etag: hash.digest("hex"), size };
}

function md5OfFile(file: string): Promise<string> {
  const hash = createHash("md5");
  return pipeline(createReadStream(file), hash).then(() => hash.digest("hex"));
}

function sidecarPath(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.meta.json`);
}

function sidecarFrom(etag: string, stat: Stats, contentType: string | undefined): Sidecar {
  return { etag, size: stat.size, mtimeMs: stat.mtimeMs, ino: stat.ino, ...(contentType ? { contentType } : {}) };
}

async function readSidecar(file: string): Promise<Sidecar | undefined> {
  try {
    const parsed = JSON.parse(await fs.readFile(sidecarPath(file), "utf8")) as Partial<Sidecar>;
    if (typeof parsed.etag !== "string" || typeof parsed.size !== "number") return undefined;
    return parsed as Sidecar;
  } catch {
    return undefined; // missing or torn: rebuilt from the content
  }
}

async function writeSidecar(file: string, sidecar: Sidecar): Promise<void> {
  const target = sidecarPath(file);
  const temp = `${target}.${randomBytes(8).toString("hex")}.partial`;
  try {
    await fs.writeFile(temp, JSON.stringify(sidecar), { flag: "wx" });
    await fs.rename(temp, target);
  } finally {
    await fs.rm(temp, { force: true });
  }
}

function sameFile(a: Pick<Stats, "size" | "mtimeMs" | "ino">, b: Pick<Stats, "size" | "mtimeMs" | "ino">): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
}

function infoOf(key: string, sidecar: Sidecar, stat: Stats): ObjectInfo {
  return {
    key,
    size: stat.size,
    etag: sidecar.etag,
    contentType: sidecar.contentType ?? contentTypeFor(key),
    lastModified: stat.mtime,
  };
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}
