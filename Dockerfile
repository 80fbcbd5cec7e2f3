# syntax=docker/dockerfile:1
# Production image: Node 24 runs the TypeScript sources directly (type stripping, no build step).

FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# patch-package applies these after the install (postinstall): a fix to postgres.js (see
# db/driver/postgres-js.ts) and one to the queue dashboard (see app/queue-dashboard.ts).
COPY patches ./patches
COPY db/driver/patches ./db/driver/patches
# Production dependencies only, exactly as locked: no embedded PostgreSQL (60 MB; db/embedded.ts
# loads its binaries only when DATABASE_URL is unset, and compose always sets it), no `node`
# package (121 MB; the base image has Node 24), no bench or test tools. patch-package stays a
# dependency: it must run at every install, this one included. TypeScript comes along, 23 MB: npm
# installs it as an optional peer of the queue dashboard's @react-router/node because the lock file
# holds it (our dev dependency). Nothing in the image runs it (Node strips types itself).
RUN npm ci --omit=dev --no-audit --no-fund \
  && rm -rf node_modules/typescript node_modules/.bin/tsc node_modules/.bin/tsserver

FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY app ./app
COPY server ./server
COPY worker ./worker
COPY purchase ./purchase
COPY db ./db
COPY lib ./lib
USER node
EXPOSE 3000
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=5 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:3000/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# API and worker in one process (compose.yaml runs them as separate services instead, with
# `node app/api.ts` and `node app/worker.ts`; the worker's healthcheck uses METRICS_PORT; and
# the queue dashboard with `node app/queue-dashboard.ts`).
# A small young generation, as package.json's scripts run it (bench/README.md).
CMD ["node", "--max-semi-space-size=4", "app/main.ts"]
