import pLimit from "p-limit";
import {
  contextOfTargetKey,
  countKeyMovePlan,
  emptyKeyMoveSummary,
  nextKeyMoveStep,
  planKeyMove,
  replaceStorageKey,
  sameObject,
  storageEntryKey,
  type KeyMovePlan,
  type KeyMoveStep,
  type KeyMoveSummary,
  type ObjectFingerprint,
} from "../core/key-moves.ts";
import { isContextKey, parseLegacyKey, storageKeyProblem } from "../core/keys.ts";
import { STORAGE_CONTEXTS, type StorageContext } from "../core/operation.ts";
import type { Database } from "../db/client.ts";
import { DatabaseError, ExitCode, Interrupted, StorageError, UserError } from "../errors.ts";
import type { DeleteFailure, ObjectInfo, Storage } from "../storage/types.ts";
import { findExistingTargets } from "./existing-targets.ts";
import { JobLockBusy, acquireJobLock, type JobLock } from "./job-lock.ts";
import * as journal from "./key-move-journal.ts";
import type { JournalEntry } from "./key-move-journal.ts";

// migrate-keys' orchestration: stream the listing page by page, find the rows that
// reference each page's keys (one query per page), plan with src/core/key-moves.ts,
// journal the moves, then move each object with bounded concurrency by the journal's
// decision table (nextKeyMoveStep): copy server-side, verify, update the row and the
// journal in one statement, and only then delete the source (sources whose moves are
// recorded are deleted together, up to deleteBatchSize a request). Never prints: progress and
// per-object events go through callbacks, and the result is returned.
//
// What a rerun relies on: every journal write happens after the storage action it
// records, so the journal never claims more than what is true. An object listed again
// continues from its journal entry; an entry whose source is no longer listed (the run
// stopped between deleting the source and marking it done) is finished by a sweep of
// the journal at the end of the run.

export type MigrateKeysStep = "journal" | "copy" | "record" | "delete" | "done";

export interface MigrateKeysInput {
  /** Only keys under this prefix. */
  prefix?: string;
  /** Move unreferenced legacy objects into this context instead of leaving them. */
  orphansTo?: StorageContext;
  /** Objects moved at once (default 16). */
  concurrency?: number;
  dryRun?: boolean;
  /** Copy and update rows, but never delete the legacy objects. */
  keepSource?: boolean;
  /** List once first to know the total (for an ETA). */
  countFirst?: boolean;
  /** Keys per listing page and per database lookup (default 1,000). */
  batchSize?: number;
  /** Sources deleted per request (default 250; DeleteObjects takes up to 1,000). */
  deleteBatchSize?: number;
}

export type MigrateKeysEvent =
  /** A decision about one listed object (keys already in the layout are not reported). */
  | { type: "plan"; plan: KeyMovePlan; journalStep?: KeyMoveStep }
  | { type: "failed"; sourceKey: string; targetKey?: string; reason: string };

export interface MigrateKeysProgress {
  /** Objects listed and dealt with so far. */
  examined: number;
  /** Objects under the prefix, when counted first. */
  total?: number;
  moved: number;
  failed: number;
  startedAt: number;
}

export interface MigrateKeysDeps {
  db: Database;
  storage: Storage;
  signal?: AbortSignal;
  onStart?: (info: { total?: number; dryRun: boolean }) => void;
  onProgress?: (progress: MigrateKeysProgress) => void;
  onEvent?: (event: MigrateKeysEvent) => void;
  /** Test hook: runs after each step of one object's move; a throw there stands for a crash. */
  afterStep?: (step: MigrateKeysStep, sourceKey: string) => void | Promise<void>;
}

export interface MigrateKeysFailure {
  sourceKey: string;
  targetKey?: string;
  reason: string;
}

export interface MigrateKeysResult {
  dryRun: boolean;
  keepSource: boolean;
  prefix: string | null;
  orphansTo: StorageContext | null;
  provider: Storage["provider"];
  bucket: string;
  /** Objects listed. */
  listed: number;
  /** What was decided for the listed objects (keys in the layout count as skipped). */
  plan: KeyMoveSummary;
  /** Moves this run finished (copied, row updated, source deleted unless kept). */
  moved: number;
  /** Of moved, per target context. */
  movedByContext: Record<StorageContext, number>;
  /** Of moved: continued from an earlier run's journal. */
  resumed: number;
  /** Moves an earlier run had already finished (their source kept with --keep-source). */
  alreadyDone: number;
  failed: number;
  /** The first failures, orphans and unknown keys (up to 100 each; the counts say how many). */
  failures: MigrateKeysFailure[];
  orphans: { sourceKey: string; reason?: string }[];
  unknown: { sourceKey: string; reason: string }[];
  durationMs: number;
}

export const DEFAULT_CONCURRENCY = 16;
export const DEFAULT_BATCH_SIZE = 1_000;
const DEFAULT_DELETE_BATCH = 250;
const LISTED_SAMPLES = 100;

/** Refuses input that cannot run, before anything is opened: a prefix no storage key can start with (../, a dot-folder). */
export function checkMigrateKeysInput(input: Pick<MigrateKeysInput, "prefix">): void {
  const prefixProblem = input.prefix === undefined ? undefined : storageKeyProblem(`${input.prefix}x`);
  if (prefixProblem !== undefined)
    throw new UserError(`Refusing --prefix ${JSON.stringify(input.prefix)}: a key under it ${prefixProblem}.`, {
      exitCode: ExitCode.refused,
      hint: "Pass a prefix of keys as they are listed, such as generations/ or user_123/.",
    });
}

export async function runMigrateKeys(input: MigrateKeysInput, deps: MigrateKeysDeps): Promise<MigrateKeysResult> {
  const concurrency = input.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024) {
    throw new UserError(`Invalid concurrency: ${concurrency}.`, { hint: "Use a whole number from 1 to 1024." });
  }
  const batchSize = input.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new UserError(`Invalid batch size: ${batchSize}.`, { hint: "Use a whole number of at least 1." });
  if (input.orphansTo !== undefined && !(STORAGE_CONTEXTS as readonly string[]).includes(input.orphansTo)) {
    throw new UserError(`Unknown context for orphans: ${input.orphansTo}.`, {
      hint: `Use one of ${STORAGE_CONTEXTS.join(", ")}.`,
    });
  }
  let lock: JobLock | undefined;
  if (input.dryRun !== true) {
    try {
      lock = await acquireJobLock("migrate-keys", deps.db);
    } catch (error) {
      if (!(error instanceof JobLockBusy)) throw error;
      throw new UserError(
        `Another genstore migrate-keys is already running on ${deps.db.describe}; this run changed nothing.`,
        {
          exitCode: ExitCode.busy,
          hint: "Wait for it to finish, or stop it (a stopped or crashed run releases its lock), then run again.",
        },
      );
    }
  }
  try {
    return await new MigrateKeysRun(input, deps, concurrency, batchSize, lock).run();
  } finally {
    await lock?.release();
  }
}

/** A move the journal's table refuses (a different object at the target, a row gone…). */
class MoveConflict extends Error {}

interface MoveWork {
  entry: JournalEntry;
  /** The source as listed, or as found by HEAD in the sweep; undefined when it is gone. */
  source: ObjectFingerprint | undefined;
  /** Journaled by this run (not continuing an earlier one). */
  fresh: boolean;
  /** The row's storageKeys as read with the listing page (saves a read in the common case). */
  rowKeys?: unknown[];
  /** The target as found by listing its folder: null when absent, undefined when unknown (HEAD it). */
  target?: ObjectFingerprint | null;
}

/** Where one move stands between actions (kept while its source waits in a delete batch). */
interface MoveState {
  step: KeyMoveStep;
  source: ObjectFingerprint | undefined;
  target: ObjectFingerprint | undefined;
  rowKeys: unknown[] | undefined;
  /** What the journal knows of the object once the source is gone (written with "recorded"). */
  journaled: ObjectFingerprint | undefined;
  /** Whether this run did anything for the move (else an earlier run had finished it). */
  acted: boolean;
}

interface PendingDelete {
  work: MoveWork;
  state: MoveState;
}

class MigrateKeysRun {
  private readonly summary = emptyKeyMoveSummary();
  private readonly limit: ReturnType<typeof pLimit>;
  private readonly startedAt = Date.now();
  private readonly dryRun: boolean;
  private readonly keepSource: boolean;
  private listed = 0;
  private examined = 0;
  private moved = 0;
  private readonly movedByContext = emptyKeyMoveSummary().byContext;
  private resumed = 0;
  private alreadyDone = 0;
  private failed = 0;
  private total: number | undefined;
  private readonly failures: MigrateKeysFailure[] = [];
  private readonly orphans: { sourceKey: string; reason?: string }[] = [];
  private readonly unknown: { sourceKey: string; reason: string }[] = [];
  /** The first error that must stop the run (a database failure, a crash hook…). */
  private fatal: { error: unknown } | undefined;

  constructor(
    private readonly input: MigrateKeysInput,
    private readonly deps: MigrateKeysDeps,
    concurrency: number,
    private readonly batchSize: number,
    private readonly lock: JobLock | undefined,
  ) {
    this.limit = pLimit(concurrency);
    this.dryRun = input.dryRun === true;
    this.keepSource = input.keepSource === true;
  }

  async run(): Promise<MigrateKeysResult> {
    const { storage, db } = this.deps;
    // Journal rows this run writes get "updatedAt" ≥ runStart; older unfinished ones are swept at the end.
    const runStart = this.dryRun ? undefined : await journal.databaseNow(db);
    if (this.input.countFirst) {
      let total = 0;
      for await (const _ of storage.list(this.input.prefix, { pageSize: this.batchSize })) {
        total++;
        if (total % 1000 === 0 && this.shouldStop()) break;
      }
      this.total = total;
    }
    this.deps.onStart?.({ total: this.total, dryRun: this.dryRun });

    // Two pages at most in flight: the next page is looked up while this one's objects
    // move, and memory stays flat however long the listing.
    let previous: Promise<void> | undefined;
    for await (const page of pages(storage.list(this.input.prefix, { pageSize: this.batchSize }), this.batchSize)) {
      if (this.shouldStop()) break;
      const current = this.processPage(page);
      if (previous) await previous;
      previous = current;
    }
    await previous;
    if (runStart !== undefined && !this.shouldStop()) await this.sweep(runStart);
    this.throwIfStopped();
    return this.result();
  }

  // --- one page of the listing ---------------------------------------------------------

  /** Plans and moves one page; never rejects (a fatal error is kept in this.fatal). */
  private async processPage(page: ObjectInfo[]): Promise<void> {
    try {
      const { db, storage } = this.deps;
      this.listed += page.length;
      const outside = page.filter((object) => {
        if (!isContextKey(object.key)) return true;
        this.count({ action: "skip", sourceKey: object.key, reason: "already in context layout" }, false);
        return false;
      });
      const entries = await journal.readJournal(
        db,
        outside.map((o) => o.key),
      );
      const bySource = new Map(entries.map((e) => [e.sourceKey, e]));
      const targets = new Set(entries.map((e) => e.targetKey));
      const lookup = outside.filter(
        (o) => !bySource.has(o.key) && !targets.has(o.key) && parseLegacyKey(o.key).pattern !== "unknown",
      );
      const rows = new Map<string, journal.ReferencingRow[]>();
      for (const row of await journal.findReferencingRows(
        db,
        lookup.map((o) => o.key),
        { provider: storage.provider, bucket: storage.bucket },
      )) {
        rows.set(row.key, [...(rows.get(row.key) ?? []), row]);
      }

      const work: MoveWork[] = [];
      const planned: { work: MoveWork; plan: Extract<KeyMovePlan, { action: "move" }> }[] = [];
      for (const object of outside) {
        const source = { size: object.size, etag: object.etag };
        const entry = bySource.get(object.key);
        if (entry !== undefined) {
          this.count(planFromJournal(entry), true, entry.step);
          work.push({ entry, source, fresh: false });
          continue;
        }
        if (targets.has(object.key)) {
          this.count({ action: "skip", sourceKey: object.key, reason: "already in context layout" }, false);
          continue;
        }
        const referencing = rows.get(object.key) ?? [];
        const plan: KeyMovePlan =
          referencing.length > 1
            ? {
                action: "unknown",
                sourceKey: object.key,
                reason: `referenced by ${referencing.length} generations (${referencing.map((r) => r.id).join(", ")}); left alone`,
              }
            : planKeyMove(object.key, referencing[0], { orphansTo: this.input.orphansTo });
        this.count(plan, plan.action === "move");
        if (plan.action === "move") {
          const entry: JournalEntry = {
            sourceKey: plan.sourceKey,
            targetKey: plan.targetKey,
            generationId: plan.generationId,
            step: "planned",
            size: null,
            etag: null,
            error: null,
          };
          planned.push({ plan, work: { entry, source, fresh: true, rowKeys: referencing[0]?.storageKeys } });
        }
      }
      this.progress();
      if (this.dryRun) return;

      const inserted = await journal.insertPlanned(
        db,
        planned.map(({ plan }) => plan),
      );
      const existing = await findExistingTargets(
        storage,
        planned.filter(({ plan }) => inserted.has(plan.sourceKey)).map(({ plan }) => plan.targetKey),
        this.limit,
      );
      for (const { plan, work: move } of planned) {
        if (inserted.has(plan.sourceKey)) work.push({ ...move, target: existing.get(plan.targetKey) });
        else {
          this.examined++;
          this.fail({
            sourceKey: plan.sourceKey,
            targetKey: plan.targetKey,
            reason: `another object's move already targets ${plan.targetKey}; left alone`,
          });
        }
      }
      await this.moveAll(work);
    } catch (error) {
      this.fatal ??= { error };
    }
  }

  /**
   * Moves a batch with the run's concurrency: each object is copied, verified and recorded
   * on its own, then the sources are deleted in batches (DeleteObjects), then the finished
   * moves are marked done in one statement.
   */
  private async moveAll(work: MoveWork[]): Promise<void> {
    const done: string[] = [];
    const deletes: PendingDelete[] = [];
    const results = await Promise.allSettled(work.map((move) => this.limit(() => this.moveOne(move, done, deletes))));
    for (const result of results) if (result.status === "rejected") this.fatal ??= { error: result.reason };
    try {
      if (deletes.length > 0) await this.limit(() => this.deleteSources(deletes.splice(0), done));
    } catch (error) {
      this.fatal ??= { error };
    }
    await journal.markDone(this.deps.db, done);
    for (const key of done) await this.hook("done", key);
  }

  /** Advances one move as far as its copy and record; a source to delete joins the batch `deletes`. */
  private async moveOne(work: MoveWork, done: string[], deletes: PendingDelete[]): Promise<void> {
    if (this.shouldStop()) return; // queued work is dropped once the run stops; the journal keeps it
    let deferred = false;
    try {
      if (work.fresh) await this.hook("journal", work.entry.sourceKey);
      const state = await this.observe(work);
      const outcome = await this.advance(work, state, done);
      if (outcome === "delete") {
        deferred = true;
        deletes.push({ work, state });
        if (deletes.length >= (this.input.deleteBatchSize ?? DEFAULT_DELETE_BATCH))
          await this.deleteSources(deletes.splice(0), done);
        return;
      }
      this.settle(work, outcome);
    } catch (error) {
      await this.failMove(work, error);
    } finally {
      if (!deferred) {
        this.examined++;
        this.progress();
      }
    }
  }

  /**
   * Deletes the sources of moves the journal records as "recorded" (copy verified, row
   * updated), in as few requests as the storage allows, then finishes each move by the
   * decision table. Once the run stops, nothing more is deleted: a rerun finds these moves
   * "recorded" and deletes their sources then.
   */
  private async deleteSources(batch: PendingDelete[], done: string[]): Promise<void> {
    if (batch.length === 0 || this.shouldStop()) return;
    const keys = batch.map(({ work }) => work.entry.sourceKey);
    let failures: DeleteFailure[];
    try {
      failures = await this.deps.storage.deleteMany(keys);
    } catch (error) {
      if (!(error instanceof StorageError)) throw error;
      failures = keys.map((key) => ({ key, error }));
    }
    const failed = new Map(failures.map((failure) => [failure.key, failure.error]));
    for (const { work, state } of batch) {
      try {
        const error = failed.get(work.entry.sourceKey);
        if (error !== undefined) throw error;
        state.source = undefined;
        state.acted = true;
        await this.hook("delete", work.entry.sourceKey);
        const outcome = await this.advance(work, state, done);
        if (outcome === "delete")
          throw new MoveConflict(`${work.entry.sourceKey} is still there after its delete; run again`);
        this.settle(work, outcome);
      } catch (error) {
        await this.failMove(work, error);
      } finally {
        this.examined++;
        this.progress();
      }
    }
  }

  private settle(work: MoveWork, outcome: "moved" | "already"): void {
    if (outcome === "already") {
      this.alreadyDone++;
      return;
    }
    this.moved++;
    const context = contextOfTargetKey(work.entry.targetKey);
    if (context) this.movedByContext[context]++;
    if (!work.fresh) this.resumed++;
  }

  /** A refused move (a conflict, a storage failure) is reported and journaled; anything else stops the run. */
  private async failMove(work: MoveWork, error: unknown): Promise<void> {
    if (!(error instanceof MoveConflict || error instanceof StorageError)) throw error;
    const { sourceKey, targetKey } = work.entry;
    this.fail({ sourceKey, targetKey, reason: error.message });
    await journal.markFailed(this.deps.db, sourceKey, error.message);
  }

  /**
   * The facts of one move, observed once (the target, from a listing of its folder or a
   * HEAD; the row) and then kept up to date from what each action did, so a fresh move
   * costs the copy, one statement and a share of a DeleteObjects and of a LIST.
   */
  private async observe(work: MoveWork): Promise<MoveState> {
    const { sourceKey, targetKey, generationId, step } = work.entry;
    const target =
      work.target !== undefined ? (work.target ?? undefined) : fingerprint(await this.deps.storage.head(targetKey));
    const rowKeys =
      generationId === null ? undefined : (work.rowKeys ?? (await journal.readStorageKeys(this.deps.db, generationId)));
    if (generationId !== null && rowKeys === undefined && step !== "done") {
      throw new MoveConflict(`generation ${generationId} no longer exists; ${sourceKey} is left where it is`);
    }
    const journaled = work.entry.size !== null ? { size: work.entry.size, etag: work.entry.etag } : undefined;
    return { step, source: work.source, target, rowKeys, journaled, acted: false };
  }

  /**
   * One object through the decision table: decide, act, update the facts, until done or
   * until its source is to be deleted ("delete": the caller deletes it with others, clears
   * state.source and calls again).
   */
  private async advance(work: MoveWork, state: MoveState, done: string[]): Promise<"moved" | "already" | "delete"> {
    const { storage } = this.deps;
    const { sourceKey, targetKey } = work.entry;
    for (let round = 0; round < 8; round++) {
      const reference = state.source ?? state.journaled;
      const action = nextKeyMoveStep(state.step, {
        sourceExists: state.source !== undefined,
        targetExists: state.target !== undefined,
        targetMatches: state.target !== undefined && reference !== undefined && sameObject(state.target, reference),
        rowPointsAtTarget: state.rowKeys?.some((e) => storageEntryKey(e) === targetKey) ?? false,
        rowPointsAtSource: state.rowKeys?.some((e) => storageEntryKey(e) === sourceKey) ?? false,
        keepSource: this.keepSource,
      });
      if (typeof action === "object") throw new MoveConflict(`${action.conflict} (${targetKey})`);
      switch (action) {
        case "copy": {
          // The listed size and ETag spare a HEAD: the copy is pinned to that ETag.
          const listed = state.source?.etag ? { source: { size: state.source.size, etag: state.source.etag } } : {};
          const copied = await storage.copy(sourceKey, targetKey, listed);
          state.acted = true;
          await this.hook("copy", sourceKey);
          state.target = { size: copied.size, etag: copied.etag };
          // The copy's response is the check; when it disagrees with the listing (the source
          // was replaced meanwhile, or an ETag that cannot be compared), measure both again.
          if (state.source === undefined || !sameObject(state.target, state.source)) {
            [state.source, state.target] = await Promise.all([
              storage.head(sourceKey).then(fingerprint),
              storage.head(targetKey).then(fingerprint),
            ]);
          }
          break;
        }
        case "verify":
        case "record":
          state.rowKeys = await this.record(work.entry, state.target!, state.rowKeys);
          state.step = "recorded";
          state.journaled = state.target;
          state.acted = true;
          await this.hook("record", sourceKey);
          break;
        case "delete-source":
          return "delete";
        case "done":
          if (state.step !== "done") done.push(sourceKey);
          return state.acted || state.step !== "done" ? "moved" : "already";
      }
    }
    throw new MoveConflict(`the move of ${sourceKey} to ${targetKey} did not settle; run again`);
  }

  /**
   * Points the row at the target and journals "recorded", in one statement. The row is
   * compared-and-set: if the app changed it meanwhile, it is read again and the change
   * applied on top. Returns the row's storageKeys as now stored.
   */
  private async record(
    entry: JournalEntry,
    target: ObjectFingerprint,
    known: unknown[] | undefined,
  ): Promise<unknown[] | undefined> {
    const { db } = this.deps;
    const move = { sourceKey: entry.sourceKey, size: target.size, etag: target.etag ?? "" };
    if (entry.generationId === null) {
      await journal.recordMove(db, move);
      return undefined;
    }
    let keys = known;
    for (let attempt = 0; attempt < 10; attempt++) {
      keys ??= await journal.readStorageKeys(db, entry.generationId);
      if (keys === undefined)
        throw new MoveConflict(
          `generation ${entry.generationId} no longer exists; ${entry.sourceKey} is left where it is`,
        );
      const next = replaceStorageKey(keys, entry.sourceKey, {
        key: entry.targetKey,
        size: target.size,
        ...(target.etag ? { etag: target.etag } : {}),
      });
      if (next === keys) {
        if (keys.some((e) => storageEntryKey(e) === entry.targetKey)) {
          await journal.recordMove(db, move);
          return keys;
        }
        throw new MoveConflict(
          `generation ${entry.generationId} no longer lists ${entry.sourceKey}; the copy at ${entry.targetKey} is kept and the source left alone`,
        );
      }
      if (await journal.recordMove(db, move, { generationId: entry.generationId, expected: keys, next })) return next;
      keys = undefined; // changed meanwhile: read it again
    }
    throw new MoveConflict(
      `generation ${entry.generationId} kept changing while its storageKeys were being updated; run again`,
    );
  }

  /**
   * Journal entries left unfinished by an earlier run and not met in this listing: their
   * source is gone (deleted just before that run stopped) or outside what was listed.
   */
  private async sweep(runStart: string): Promise<void> {
    const { db, storage } = this.deps;
    let after: string | undefined;
    while (!this.shouldStop()) {
      const entries = await journal.readStaleJournal(db, {
        before: runStart,
        prefix: this.input.prefix,
        after,
        limit: this.batchSize,
      });
      if (entries.length === 0) return;
      after = entries.at(-1)!.sourceKey;
      const work = await Promise.all(
        entries.map((entry) =>
          this.limit(async (): Promise<MoveWork> => ({
            entry,
            source: fingerprint(await storage.head(entry.sourceKey)),
            fresh: false,
          })),
        ),
      );
      await this.moveAll(work);
      if (this.fatal) return;
    }
  }

  // --- bookkeeping -----------------------------------------------------------------------

  private count(plan: KeyMovePlan, pending: boolean, journalStep?: KeyMoveStep): void {
    countKeyMovePlan(this.summary, plan);
    if (!pending) this.examined++;
    if (plan.action === "skip") return;
    if (plan.action === "orphan" && this.orphans.length < LISTED_SAMPLES)
      this.orphans.push({ sourceKey: plan.sourceKey, ...(plan.reason ? { reason: plan.reason } : {}) });
    if (plan.action === "unknown" && this.unknown.length < LISTED_SAMPLES)
      this.unknown.push({ sourceKey: plan.sourceKey, reason: plan.reason });
    if (this.dryRun && pending) this.examined++;
    this.deps.onEvent?.({ type: "plan", plan, ...(journalStep ? { journalStep } : {}) });
  }

  private fail(failure: MigrateKeysFailure): void {
    this.failed++;
    if (this.failures.length < LISTED_SAMPLES) this.failures.push(failure);
    this.deps.onEvent?.({ type: "failed", ...failure });
  }

  private progress(): void {
    this.deps.onProgress?.({
      examined: this.examined,
      total: this.total,
      moved: this.moved,
      failed: this.failed,
      startedAt: this.startedAt,
    });
  }

  private async hook(step: MigrateKeysStep, sourceKey: string): Promise<void> {
    await this.deps.afterStep?.(step, sourceKey);
  }

  private shouldStop(): boolean {
    return this.fatal !== undefined || this.deps.signal?.aborted === true || this.lock?.lost.aborted === true;
  }

  private throwIfStopped(): void {
    if (this.fatal) throw this.fatal.error;
    if (this.lock?.lost.aborted) {
      throw new DatabaseError(
        `Lost the database connection that holds migrate-keys' lock after ${this.moved.toLocaleString("en-US")} moves; stopped.`,
        "Check the database, then run the same command again: it continues from the journal.",
      );
    }
    if (this.deps.signal?.aborted) {
      throw new Interrupted(
        `Interrupted after ${this.moved.toLocaleString("en-US")} moves (${this.failed.toLocaleString("en-US")} failed).`,
        "Run the same command again: it continues from the journal, object by object.",
      );
    }
  }

  private result(): MigrateKeysResult {
    const { storage } = this.deps;
    return {
      dryRun: this.dryRun,
      keepSource: this.keepSource,
      prefix: this.input.prefix ?? null,
      orphansTo: this.input.orphansTo ?? null,
      provider: storage.provider,
      bucket: storage.bucket,
      listed: this.listed,
      plan: this.summary,
      moved: this.moved,
      movedByContext: this.movedByContext,
      resumed: this.resumed,
      alreadyDone: this.alreadyDone,
      failed: this.failed,
      failures: this.failures,
      orphans: this.orphans,
      unknown: this.unknown,
      durationMs: Date.now() - this.startedAt,
    };
  }
}

/** The plan a journal entry stands for (a move decided by an earlier run is kept as decided). */
function planFromJournal(entry: JournalEntry): KeyMovePlan {
  const legacy = parseLegacyKey(entry.sourceKey);
  return {
    action: "move",
    sourceKey: entry.sourceKey,
    targetKey: entry.targetKey,
    context: contextOfTargetKey(entry.targetKey) ?? "generated",
    kind:
      legacy.pattern !== "unknown" ? legacy.kind : entry.targetKey.startsWith("thumbnails/") ? "thumbnail" : "output",
    generationId: entry.generationId,
    index: null,
  };
}

function fingerprint(info: ObjectInfo | undefined): ObjectFingerprint | undefined {
  return info === undefined ? undefined : { size: info.size, etag: info.etag };
}

/** A listing in arrays of up to size objects. */
async function* pages(objects: AsyncIterable<ObjectInfo>, size: number): AsyncGenerator<ObjectInfo[]> {
  let page: ObjectInfo[] = [];
  for await (const object of objects) {
    page.push(object);
    if (page.length >= size) {
      yield page;
      page = [];
    }
  }
  if (page.length > 0) yield page;
}
