import type { GenerationState, GenerationWrite } from "../core/generation-merge.ts";
import type { Database } from "../db/client.ts";
import { DatabaseError } from "../errors.ts";
import type { Prisma } from "../generated/prisma/client.ts";

// The Generation row's reads and the one write path of the pipeline. Every write runs in a
// short transaction that first takes a per-prediction advisory lock (released at commit), then
// re-reads the row and lets the caller decide from it: two deliveries of one prediction, in
// one process or several, take turns here, and the second sees what the first wrote.
// Downloads and uploads happen outside, before: a lock is never held across the network.

export interface GenerationRow extends GenerationState {
  id: string;
  createdAt: Date;
}

type Tx = Prisma.TransactionClient;

const SELECT = {
  id: true,
  userId: true,
  prompt: true,
  status: true,
  replicateId: true,
  imageUrls: true,
  storageProvider: true,
  storageBucket: true,
  storageKeys: true,
  operationType: true,
  storageContext: true,
  metadata: true,
  completedAt: true,
  error: true,
  createdAt: true,
} as const;

/** The row of a prediction, or, when it has none, the row `adoptId` names if that row has no prediction yet. */
export async function findRow(
  db: Pick<Database, "prisma"> | { prisma: Tx },
  replicateId: string,
  adoptId?: string | null,
): Promise<{ row: GenerationRow | null; adopted: boolean }> {
  const prisma = db.prisma;
  const row = await prisma.generation.findUnique({ where: { replicateId }, select: SELECT });
  if (row) return { row: row, adopted: false };
  if (!adoptId) return { row: null, adopted: false };
  const orphanRow = await prisma.generation.findFirst({ where: { id: adoptId, replicateId: null }, select: SELECT });
  return { row: orphanRow ?? null, adopted: orphanRow !== null };
}

/** Whether a row with this id exists (a generationId taken by another prediction cannot be reused). */
export async function idTaken(db: Database, id: string): Promise<boolean> {
  return (await db.prisma.generation.count({ where: { id } })) > 0;
}

export interface RowWriteResult {
  /** The row after the write (or as found, when nothing changed). */
  row: GenerationRow;
  created: boolean;
  changed: boolean;
}

/**
 * Locks the prediction, reads its row (or the adoptable row), and writes what `decide`
 * returns for it: nothing (null), an update, or, when there is no row, a new row with
 * `newId`. decide may run twice if the row appears between the read and the insert (the
 * app inserted it directly): it must be a pure function of the row.
 */
export async function writeRow(
  db: Database,
  input: { replicateId: string; adoptId?: string | null; newId: string },
  decide: (current: GenerationRow | null) => GenerationWrite | null,
): Promise<RowWriteResult> {
  try {
    return await db.prisma.$transaction(
      async (tx) => {
        await tx.$executeRawUnsafe(
          `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
          `genstore:prediction:${input.replicateId}`,
        );
        let { row: current } = await findRow({ prisma: tx }, input.replicateId, input.adoptId);
        let created = false;
        let write = decide(current);
        if (current === null) {
          if (write === null)
            throw new Error(`decide returned nothing for a new row of prediction ${input.replicateId}`);
          created = await insertRow(tx, input.newId, input.replicateId, write);
          current = (await findRow({ prisma: tx }, input.replicateId)).row;
          if (current === null) {
            throw new DatabaseError(
              `Cannot create the row of prediction ${input.replicateId}: generation id ${input.newId} belongs to another prediction.`,
              "Register the webhook with the generationId of this prediction's row, or leave it out.",
            );
          }
          // Someone else's row won the insert: decide again from it.
          if (!created) write = decide(current);
        }
        if (write === null) return { row: current, created, changed: created };
        const row = (await tx.generation.update({
          where: { id: current.id },
          data: toPrisma(write),
          select: SELECT,
        })) as GenerationRow;
        return { row, created, changed: true };
      },
      // Waiting for the lock is expected under concurrent deliveries; the work inside is short.
      { maxWait: 15_000, timeout: 30_000 },
    );
  } catch (error) {
    if (error instanceof DatabaseError) throw error;
    throw new DatabaseError(
      `Could not write the row of prediction ${input.replicateId} in ${db.describe}: ${firstLine(error)}.`,
      "Check the database is reachable and migrated (genstore db status), then run again: stored objects are kept and reused.",
      error,
    );
  }
}

/** A bare row (the rest is written by the update that follows); false when a row already holds the id or prediction. */
async function insertRow(tx: Tx, id: string, replicateId: string, write: GenerationWrite): Promise<boolean> {
  const inserted = await tx.$executeRawUnsafe(
    `INSERT INTO "Generation" ("id", "userId", "prompt", "status", "replicateId", "updatedAt")
     VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT DO NOTHING`,
    id,
    write.userId ?? "",
    write.prompt ?? "",
    write.status ?? "starting",
    replicateId,
  );
  return inserted === 1;
}

function toPrisma(write: GenerationWrite): Prisma.GenerationUpdateInput {
  const data: Record<string, unknown> = { ...write };
  if (write.storageKeys !== undefined) data["storageKeys"] = write.storageKeys;
  if (write.metadata !== undefined) data["metadata"] = write.metadata;
  return data;
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return (text.split("\n").find((l) => l.trim() !== "") ?? text).trim().replace(/\.$/, "");
}
