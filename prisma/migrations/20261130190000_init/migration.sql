-- CreateTable
CREATE TABLE "Generation" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "prompt" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'starting',
    "replicateId" TEXT,
    "imageUrls" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "storageProvider" TEXT,
    "storageBucket" TEXT,
    "storageKeys" JSONB[] DEFAULT ARRAY[]::JSONB[],
    "operationType" TEXT,
    "storageContext" TEXT,
    "metadata" JSONB DEFAULT '{}',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    "completedAt" TIMESTAMP(3),
    "error" TEXT,

    CONSTRAINT "Generation_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "WebhookDelivery" (
    "id" TEXT NOT NULL,
    "predictionId" TEXT NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'pending',
    "body" JSONB NOT NULL,
    "query" JSONB NOT NULL DEFAULT '{}',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "lockedUntil" TIMESTAMP(3),
    "lastError" TEXT,
    "receivedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    "doneAt" TIMESTAMP(3),

    CONSTRAINT "WebhookDelivery_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "KeyMove" (
    "sourceKey" TEXT NOT NULL,
    "targetKey" TEXT NOT NULL,
    "generationId" TEXT,
    "step" TEXT NOT NULL DEFAULT 'planned',
    "size" BIGINT,
    "etag" TEXT,
    "error" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "KeyMove_pkey" PRIMARY KEY ("sourceKey")
);

-- CreateTable
CREATE TABLE "JobCursor" (
    "name" TEXT NOT NULL,
    "cursor" TEXT,
    "data" JSONB NOT NULL DEFAULT '{}',
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "JobCursor_pkey" PRIMARY KEY ("name")
);

-- CreateIndex
CREATE UNIQUE INDEX "Generation_replicateId_key" ON "Generation"("replicateId");

-- CreateIndex
CREATE INDEX "Generation_createdAt_id_idx" ON "Generation"("createdAt" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "Generation_userId_createdAt_id_idx" ON "Generation"("userId", "createdAt" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "Generation_operationType_createdAt_id_idx" ON "Generation"("operationType", "createdAt" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "Generation_status_createdAt_id_idx" ON "Generation"("status", "createdAt" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "WebhookDelivery_state_receivedAt_idx" ON "WebhookDelivery"("state", "receivedAt");

-- CreateIndex
CREATE INDEX "WebhookDelivery_predictionId_idx" ON "WebhookDelivery"("predictionId");

-- CreateIndex
CREATE UNIQUE INDEX "KeyMove_targetKey_key" ON "KeyMove"("targetKey");

-- CreateIndex
CREATE INDEX "KeyMove_step_idx" ON "KeyMove"("step");

