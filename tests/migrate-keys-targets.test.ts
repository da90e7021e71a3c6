import { describe, expect, it } from "vitest";
import { findExistingTargets } from "../src/jobs/existing-targets.ts";
import { makeStorage, putObjects } from "./support/migrate-keys-fixtures.ts";

// Whether migrate-keys' targets exist, answered by listing their folders instead of a HEAD each.

const direct = <T>(work: () => Promise<T>) => work();

describe.each(["local", "s3"] as const)("findExistingTargets on %s storage", (provider) => {
  it("finds the targets that exist, knows the others are absent, and ignores keys outside the targets' range", async () => {
    const storage = await makeStorage(provider);
    await putObjects(storage, [
      "generated/u1/g1_0.png",
      "generated/u1/g3_0.png",
      "generated/u10/g1_0.png",
      "generated/u1x",
      "edited/u2/g2_0.jpg",
    ]);
    const known = await findExistingTargets(
      storage,
      ["generated/u1/g1_0.png", "generated/u1/g2_0.png", "edited/u2/g2_0.jpg", "videos/u3/g3.mp4"],
      direct,
    );
    expect(known.get("generated/u1/g1_0.png")).toMatchObject({
      size: "body of generated/u1/g1_0.png".length,
      etag: expect.any(String),
    });
    expect(known.get("generated/u1/g2_0.png")).toBeNull();
    expect(known.get("edited/u2/g2_0.jpg")).not.toBeNull();
    expect(known.get("videos/u3/g3.mp4")).toBeNull();
  });

  it("leaves targets unknown (to be HEADed) when their folder would take more listing than HEADs", async () => {
    const storage = await makeStorage(provider);
    await putObjects(
      storage,
      Array.from({ length: 30 }, (_, i) => `generated/u1/a${String(i).padStart(2, "0")}_0.png`),
    );
    const known = await findExistingTargets(storage, ["generated/u1/a00_0.png", "generated/u1/z_0.png"], direct, 10);
    expect(known.get("generated/u1/a00_0.png")).not.toBeNull();
    expect(known.has("generated/u1/z_0.png")).toBe(false);
  });
});
