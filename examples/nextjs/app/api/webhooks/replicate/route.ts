// Replicate's webhook: register https://<host>/api/webhooks/replicate?userId=<id>&generationId=<id>
import { after } from "next/server";
import { createWebhookRoute } from "genstore";

// pg, sharp, node:crypto and the AWS SDK need Node, not the Edge runtime.
export const runtime = "nodejs";

// Opens genstore on the first request (never at import or build); answers 503 with
// Retry-After while the database is unreachable or not migrated, and tries again on the
// next request. After the 200, `after` ingests the delivery and finishes a few stranded ones.
export const POST = createWebhookRoute({ waitUntil: after });
