// Finishes deliveries left behind (a download that failed after the 200): call it on a
// schedule with `Authorization: Bearer $CRON_SECRET`, as Vercel Cron does (see vercel.json).
import { createDrainRoute } from "genstore";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export const GET = createDrainRoute();
