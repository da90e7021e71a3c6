// migrate-keys of N legacy objects (default 10,000, small bodies) on a moto_server started
// here on loopback, with its rows on PostgreSQL, next to `rclone move` of N objects between
// two prefixes on the same server with the same concurrency, in the same run. Then the
// peak RSS of a run at BENCH_RSS_OBJECTS (default 100,000) objects, to show memory stays
// flat (on the local storage provider, see below). Every genstore run goes through the binary (bin/genstore, the built bundle when
// present) under /usr/bin/time -v: objects/s include start-up and every database update.
//
//   npm run bench -- migrate-keys
//   BENCH_OBJECTS=2000 BENCH_RSS_OBJECTS=0 npx tsx bench/migrate-keys.ts     (quick look)
//
// Needs moto_server, rclone (apt-get install -y rclone) and PostgreSQL (BENCH_DATABASE_URL).
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { cleanEnv } from "../tests/support/cli.ts";
import { startMotoServer } from "../tests/support/moto.ts";
import { withBenchDatabase } from "./support.ts";

const objects = Number(process.env.BENCH_OBJECTS ?? 10_000);
const rssObjects = Number(process.env.BENCH_RSS_OBJECTS ?? 100_000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 16);
const run = promisify(execFile);
const body = Buffer.alloc(1024, "x");

const moto = await startMotoServer();
const { endpoint } = moto;
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";
const s3 = new S3Client({
  endpoint,
  region: "us-east-1",
  forcePathStyle: true,
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
  requestChecksumCalculation: "WHEN_REQUIRED",
  responseChecksumValidation: "WHEN_REQUIRED",
});

const seconds = (start: number) => (performance.now() - start) / 1000;
const rate = (n: number, s: number) => `${Math.round(n / s).toLocaleString("en-US")} objects/s`;
const legacyKey = (i: number) => `u${i % 100}/img${i}.png`;

console.log(
  `migrate-keys: moto_server at ${endpoint}, ${objects.toLocaleString("en-US")} objects of 1 KiB, concurrency ${concurrency}`,
);

// BENCH_PART=rss runs only the memory part, BENCH_PART=speed only the comparison.
const part = process.env.BENCH_PART ?? "all";
let ours: Awaited<ReturnType<typeof migrate>> | undefined;
if (part !== "rss") {
  // --- rclone move: legacy/ → moved/ in its own bucket -------------------------------------
  await seed("bench-rclone", objects, (i) => `legacy/${legacyKey(i)}`);
  const rcloneEnv: Record<string, string> = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "AWS_CA_BUNDLE") as [string, string][]),
    RCLONE_CONFIG_MOTO_TYPE: "s3",
    RCLONE_CONFIG_MOTO_PROVIDER: "Other",
    RCLONE_CONFIG_MOTO_ENDPOINT: endpoint,
    RCLONE_CONFIG_MOTO_ACCESS_KEY_ID: "test",
    RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY: "test",
    RCLONE_CONFIG_MOTO_REGION: "us-east-1",
    RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE: "true",
  };
  const rcloneArgs = [
    "move",
    "moto:bench-rclone/legacy",
    "moto:bench-rclone/moved",
    "--transfers",
    String(concurrency),
    "--checkers",
    String(concurrency),
    "--s3-no-check-bucket",
  ];
  const rcloneStart = performance.now();
  const rcloneRun = await run("/usr/bin/time", ["-v", "rclone", ...rcloneArgs], {
    env: rcloneEnv,
    maxBuffer: 64 * 1024 * 1024,
  });
  const rcloneSeconds = seconds(rcloneStart);
  const rcloneCpu = cpuSeconds(rcloneRun.stderr);
  const rcloneMoved = await count("bench-rclone", "moved/");
  const rcloneLeft = await count("bench-rclone", "legacy/");

  // --- genstore migrate-keys through the binary, rows on PostgreSQL ---------------------------
  ours = await migrate("ours", "bench-genstore", objects);
  const ratio = objects / ours.seconds / (rcloneMoved / rcloneSeconds);
  console.log(`  rclone ${rcloneArgs.join(" ")}`);
  console.log(
    `    ${rcloneSeconds.toFixed(1)} s, ${rcloneMoved.toLocaleString("en-US")} moved, ${rcloneLeft} left: ${rate(rcloneMoved, rcloneSeconds)}, ${rcloneCpu.toFixed(1)} s CPU`,
  );
  console.log(`  genstore migrate-keys --concurrency ${concurrency} --json (rows on PostgreSQL)`);
  console.log(
    `    ${ours.seconds.toFixed(1)} s, ${ours.moved.toLocaleString("en-US")} moved (rows updated): ${rate(ours.moved, ours.seconds)}, ${ours.cpu.toFixed(1)} s CPU, peak RSS ${ours.rssMiB} MiB`,
  );
  console.log(`  ratio genstore/rclone: ${ratio.toFixed(2)}x (target ≥ 1)`);
}

// Peak RSS: moto takes minutes per 10,000 objects on two cores, so the memory runs use the
// local storage provider (same job, same listing pages and concurrency; rows on PostgreSQL),
// at BENCH_OBJECTS and at BENCH_RSS_OBJECTS, to show the peak does not grow with the listing.
if (rssObjects > 0 && part !== "speed") {
  const small = await migrate("rss_small", { local: true }, objects);
  const big = await migrate("rss_big", { local: true }, rssObjects);
  console.log(`  peak RSS, local storage provider, rows on PostgreSQL:`);
  console.log(
    `    ${objects.toLocaleString("en-US")} objects: ${small.rssMiB} MiB (${small.seconds.toFixed(0)} s, ${rate(small.moved, small.seconds)})`,
  );
  console.log(
    `    ${rssObjects.toLocaleString("en-US")} objects: ${big.rssMiB} MiB (${big.seconds.toFixed(0)} s, ${rate(big.moved, big.seconds)})`,
  );
}
s3.destroy();
moto.stop();

/** Seeds a bucket and its rows in a schema of their own, then runs the binary under /usr/bin/time -v. */
async function migrate(
  name: string,
  where: string | { local: true },
  n: number,
): Promise<{ seconds: number; moved: number; rssMiB: number; cpu: number }> {
  let outcome = { seconds: 0, moved: 0, rssMiB: 0, cpu: 0 };
  await withBenchDatabase(`migrate_keys_${name}`, async ({ db, env: databaseEnv }) => {
    const seedStart = performance.now();
    const home = typeof where === "string" ? undefined : await mkdtemp(path.join(os.tmpdir(), "genstore-bench-"));
    await Promise.all([
      home === undefined ? seed(where as string, n, legacyKey) : seedFolder(path.join(home, "storage"), n),
      db.query(`
        INSERT INTO "Generation" (id, "userId", prompt, status, "operationType", "storageKeys", "createdAt", "updatedAt")
        SELECT 'g' || lpad(i::text, 8, '0'), 'u' || (i % 100),
               (ARRAY['[EDITED] ', '[UPSCALED] ', '[VIDEO] ', '', '', ''])[1 + i % 6] || 'prompt ' || i, 'succeeded',
               CASE WHEN i % 3 = 0 THEN 'generation' END,
               ARRAY[jsonb_build_object('key', 'u' || (i % 100) || '/img' || i || '.png', 'kind', 'output', 'size', 1024)],
               now(), now()
          FROM generate_series(0, ${n - 1}) AS i`),
    ]);
    await db.query(`ANALYZE "Generation"`);
    console.log(
      `  (${name}: seeded ${n.toLocaleString("en-US")} objects and rows in ${seconds(seedStart).toFixed(0)} s)`,
    );
    const env = cleanEnv({
      ...databaseEnv,
      ...(home !== undefined
        ? { GENSTORE_STORAGE: "local", GENSTORE_HOME: home }
        : {
            GENSTORE_STORAGE: "aws",
            S3_BUCKET: where as string,
            AWS_ENDPOINT_URL_S3: endpoint,
            AWS_REGION: "us-east-1",
            AWS_ACCESS_KEY_ID: "test",
            AWS_SECRET_ACCESS_KEY: "test",
          }),
    });
    const start = performance.now();
    const { stdout, stderr } = await run(
      "/usr/bin/time",
      [
        "-v",
        process.execPath,
        path.resolve("bin/genstore"),
        "migrate-keys",
        "--json",
        "--concurrency",
        String(concurrency),
      ],
      {
        env,
        maxBuffer: 256 * 1024 * 1024,
      },
    );
    const elapsed = seconds(start);
    const result = JSON.parse(stdout) as { moved: number; failed: number };
    const rssKiB = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1] ?? 0);
    const [{ n: updated } = { n: 0 }] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "Generation" WHERE "storageKeys"[1] ->> 'key' ~ '^(generated|edited|upscaled|videos)/'`,
    );
    if (result.failed > 0 || updated !== n)
      throw new Error(`${name}: ${result.failed} failed, ${updated} of ${n} rows updated`);
    outcome = { seconds: elapsed, moved: result.moved, rssMiB: Math.round(rssKiB / 1024), cpu: cpuSeconds(stderr) };
    if (home !== undefined) await rm(home, { recursive: true, force: true });
  });
  return outcome;
}

async function seed(bucket: string, n: number, key: (i: number) => string): Promise<void> {
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < n) {
        const i = next++;
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key(i), Body: body }));
      }
    }),
  );
}

/** User + system CPU seconds from /usr/bin/time -v. */
function cpuSeconds(report: string): number {
  const user = Number(/User time \(seconds\): ([\d.]+)/.exec(report)?.[1] ?? 0);
  const system = Number(/System time \(seconds\): ([\d.]+)/.exec(report)?.[1] ?? 0);
  return user + system;
}

/** Legacy objects written straight into a local storage folder (the provider rebuilds etags it lacks). */
async function seedFolder(root: string, n: number): Promise<void> {
  for (let u = 0; u < 100; u++) await mkdir(path.join(root, `u${u}`), { recursive: true });
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < n) {
        const i = next++;
        await writeFile(path.join(root, legacyKey(i)), body);
      }
    }),
  );
}

async function count(bucket: string, prefix: string): Promise<number> {
  let total = 0;
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    total += page.KeyCount ?? 0;
    token = page.NextContinuationToken;
  } while (token);
  return total;
}
