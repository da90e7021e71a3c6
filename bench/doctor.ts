// doctor on N rows (PostgreSQL) and N local objects (empty files, 1,000 user folders), at
// each size of BENCH_SIZES (default 100,000 and 1,000,000): objects checked per second and
// the whole process's peak RSS (the binary under /usr/bin/time), next to `find` listing the
// same tree (names only, and names with sizes, as doctor needs) and `rclone lsf -R` (the
// issue's other reference, from Debian's packages) in the same run. Then BENCH_S3_OBJECTS
// (default 100,000) on a moto_server started here, next to a bare ListObjectsV2 walk of the
// same bucket and `rclone lsf -R` on it (with and without --fast-list).
//
//   npm run bench -- doctor
//   BENCH_SIZES=100000 BENCH_S3_OBJECTS=0 npx tsx bench/doctor.ts     (quick look)
//   BENCH_PROFILE=/tmp/prof ...   also runs each doctor once more under --cpu-prof, its
//                                 profile written to that folder (the timed run is not profiled)
//
// Needs PostgreSQL (BENCH_DATABASE_URL); moto_server for the S3 part.
import { CreateBucketCommand, PutObjectCommand, S3Client, paginateListObjectsV2 } from "@aws-sdk/client-s3";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pLimit from "p-limit";
import { cleanEnv } from "../tests/support/cli.ts";
import { startMotoServer } from "../tests/support/moto.ts";
import { withBenchDatabase, type BenchDatabase } from "./support.ts";

/** BENCH_SIZES=0: the S3 part alone. */
const sizes = (process.env.BENCH_SIZES ?? "100000,1000000")
  .split(",")
  .map(Number)
  .filter((size) => size > 0);
const s3Objects = Number(process.env.BENCH_S3_OBJECTS ?? 100_000);
const USERS = 1000;
const bin = path.resolve("bin/genstore");
const n = (value: number) => Math.round(value).toLocaleString("en-US");

const keyOf = (i: number) => `generated/u${i % USERS}/g${String(i).padStart(8, "0")}_0.mp4`;

/** Rows from..to (inclusive), each listing one object of `size` bytes. */
async function seedRows(db: BenchDatabase["db"], from: number, to: number, size: number): Promise<void> {
  const t = await db.generations();
  await db.query(`
    INSERT INTO ${t.name} (id, "userId", prompt, status, "replicateId", "imageUrls", "storageKeys", "operationType",
                           "storageContext", metadata, "createdAt", "updatedAt")
    SELECT 'g' || lpad(i::text, 8, '0'), 'u' || (i % ${USERS}), 'a fox ' || i, 'succeeded', 'p' || i, ARRAY[]::text[],
           ARRAY[jsonb_build_object('key', 'generated/u' || (i % ${USERS}) || '/g' || lpad(i::text, 8, '0') || '_0.mp4',
                                    'size', ${size}, 'kind', 'output')],
           'generation', 'generated', '{}'::jsonb, now(), now()
      FROM generate_series(${from}, ${to}) AS i`);
  await db.query(`VACUUM ANALYZE ${t.name}`);
}

function seedFiles(root: string, from: number, to: number): void {
  for (let u = 0; u < USERS; u++) mkdirSync(path.join(root, "generated", `u${u}`), { recursive: true });
  for (let i = from; i <= to; i++) writeFileSync(path.join(root, keyOf(i)), "");
}

interface Timed {
  seconds: number;
  rssMiB: number;
  stdout: string;
}

/** A whole process under /usr/bin/time: wall seconds and peak RSS. */
function timed(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Timed {
  const statsFile = path.join(os.tmpdir(), `genstore-bench-time-${process.pid}`);
  const start = performance.now();
  let stdout: string;
  try {
    stdout = execFileSync("/usr/bin/time", ["-o", statsFile, "-f", "%M", command, ...args], {
      env,
      maxBuffer: 1024 ** 3,
      stdio: ["ignore", "pipe", "inherit"],
    }).toString();
  } catch (error) {
    stdout = String((error as { stdout?: Buffer }).stdout ?? "");
    if ((error as { status?: number }).status !== 10) throw error;
  }
  const seconds = (performance.now() - start) / 1000;
  const rss = Number(execFileSync("tail", ["-n1", statsFile]).toString().trim());
  rmSync(statsFile, { force: true });
  return { seconds, rssMiB: rss / 1024, stdout };
}

const profileDir = process.env.BENCH_PROFILE;

/** rclone from Debian's packages (installed when missing, outside CI), the other reference. */
function rclonePath(): string {
  if (existsSync("/usr/bin/rclone")) return "/usr/bin/rclone";
  if (process.env.CI) throw new Error("rclone is missing: the doctor benchmark does not install it in CI");
  console.log("  installing rclone (apt-get install rclone)…");
  execFileSync("apt-get", ["install", "-y", "rclone"], { stdio: "ignore" });
  return "/usr/bin/rclone";
}
const rclone = rclonePath();
/** No config file, so rclone says nothing about it; remotes come from RCLONE_CONFIG_* variables. */
const rcloneEnv = { ...process.env, RCLONE_CONFIG: "/dev/null" };

function doctor(env: NodeJS.ProcessEnv, count: number, label: string): void {
  const run = timed(process.execPath, [bin, "doctor", "--json"], env);
  const result = JSON.parse(run.stdout) as { rows: number; objects: number; remaining: number };
  if (result.objects !== count || result.rows !== count || result.remaining !== 0)
    throw new Error(`doctor saw ${result.rows} rows, ${result.objects} objects, ${result.remaining} problems`);
  console.log(
    `  genstore doctor (${label})`.padEnd(44) +
      `${run.seconds.toFixed(1).padStart(6)} s  ${n(count / run.seconds).padStart(9)} objects/s  ${run.rssMiB.toFixed(0).padStart(4)} MiB peak RSS`,
  );
  if (profileDir) {
    const dir = path.resolve(profileDir, label.replace(/\W+/g, "-"), String(count));
    timed(process.execPath, ["--cpu-prof", "--cpu-prof-dir", dir, bin, "doctor", "--json"], env);
    console.log(`  (profile of another run in ${dir})`);
  }
}

await withBenchDatabase("doctor", async ({ db, env: dbEnv }) => {
  const home = mkdtempSync(path.join(os.tmpdir(), "genstore-bench-doctor-"));
  const root = path.join(home, "storage");
  try {
    const env = cleanEnv({ ...dbEnv, GENSTORE_HOME: home });
    let seeded = 0;
    for (const size of sizes) {
      const start = performance.now();
      await seedRows(db, seeded + 1, size, 0);
      seedFiles(root, seeded + 1, size);
      seeded = size;
      console.log(
        `doctor: ${n(size)} rows on PostgreSQL, ${n(size)} empty local files (seeded in ${((performance.now() - start) / 1000).toFixed(0)} s)`,
      );
      const findNames = timed("find", [root, "-type", "f"]);
      const findSizes = timed("find", [root, "-type", "f", "-printf", "%s %P\n"]);
      console.log(
        `  find -type f`.padEnd(44) +
          `${findNames.seconds.toFixed(1).padStart(6)} s  ${n(size / findNames.seconds).padStart(9)} objects/s`,
      );
      console.log(
        `  find -type f -printf '%s %P' (with sizes)`.padEnd(44) +
          `${findSizes.seconds.toFixed(1).padStart(6)} s  ${n(size / findSizes.seconds).padStart(9)} objects/s`,
      );
      const lsf = timed(rclone, ["lsf", "-R", "--files-only", "--format", "sp", root], rcloneEnv);
      if (lsf.stdout.split("\n").length - 1 !== size) throw new Error("rclone lsf listed another number of objects");
      console.log(
        `  rclone lsf -R --format sp (with sizes)`.padEnd(44) +
          `${lsf.seconds.toFixed(1).padStart(6)} s  ${n(size / lsf.seconds).padStart(9)} objects/s  ${lsf.rssMiB.toFixed(0).padStart(4)} MiB peak RSS`,
      );
      doctor(env, size, "local");
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

if (s3Objects > 0) {
  const moto = await startMotoServer();
  try {
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";
    const s3 = new S3Client({
      endpoint: moto.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
    });
    const bucket = "bench-doctor";
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const start = performance.now();
    const limit = pLimit(32);
    await Promise.all(
      Array.from({ length: s3Objects }, (_, i) =>
        limit(() =>
          s3.send(
            new PutObjectCommand({ Bucket: bucket, Key: keyOf(i + 1), Body: new Uint8Array(0), ContentLength: 0 }),
          ),
        ),
      ),
    );
    console.log(
      `doctor: ${n(s3Objects)} rows on PostgreSQL, ${n(s3Objects)} objects on moto_server (seeded in ${((performance.now() - start) / 1000).toFixed(0)} s)`,
    );
    const listStart = performance.now();
    let listed = 0;
    for await (const page of paginateListObjectsV2({ client: s3, pageSize: 1000 }, { Bucket: bucket }))
      listed += page.Contents?.length ?? 0;
    const listSeconds = (performance.now() - listStart) / 1000;
    console.log(
      `  ListObjectsV2 pages alone (SDK, in process)`.padEnd(44) +
        `${listSeconds.toFixed(1).padStart(6)} s  ${n(listed / listSeconds).padStart(9)} objects/s`,
    );
    // rclone's remote from the environment (no config file): moto as an S3 provider.
    const remote = {
      ...rcloneEnv,
      // A custom CA bundle (set on some machines for HTTPS) makes rclone's S3 backend refuse to start; moto is plain HTTP.
      AWS_CA_BUNDLE: undefined,
      RCLONE_CONFIG_MOTO_TYPE: "s3",
      RCLONE_CONFIG_MOTO_PROVIDER: "Other",
      RCLONE_CONFIG_MOTO_ENDPOINT: moto.endpoint,
      RCLONE_CONFIG_MOTO_ACCESS_KEY_ID: "test",
      RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY: "test",
      RCLONE_CONFIG_MOTO_REGION: "us-east-1",
    };
    for (const fastList of [false, true]) {
      const args = [
        "lsf",
        "-R",
        "--files-only",
        "--format",
        "sp",
        ...(fastList ? ["--fast-list"] : []),
        `moto:${bucket}`,
      ];
      const lsf = timed(rclone, args, remote);
      if (lsf.stdout.split("\n").length - 1 !== s3Objects)
        throw new Error("rclone lsf listed another number of objects");
      console.log(
        `  rclone lsf -R --format sp${fastList ? " --fast-list" : ""}`.padEnd(44) +
          `${lsf.seconds.toFixed(1).padStart(6)} s  ${n(s3Objects / lsf.seconds).padStart(9)} objects/s  ${lsf.rssMiB.toFixed(0).padStart(4)} MiB peak RSS`,
      );
    }
    await withBenchDatabase("doctor_s3", async ({ db, env: dbEnv }) => {
      await seedRows(db, 1, s3Objects, 0);
      const env = cleanEnv({
        ...dbEnv,
        GENSTORE_STORAGE: "aws",
        S3_BUCKET: bucket,
        AWS_ENDPOINT_URL_S3: moto.endpoint,
        AWS_ACCESS_KEY_ID: "test",
        AWS_SECRET_ACCESS_KEY: "test",
        AWS_REGION: "us-east-1",
      });
      doctor(env, s3Objects, "moto_server");
    });
    s3.destroy();
  } finally {
    moto.stop();
  }
}
