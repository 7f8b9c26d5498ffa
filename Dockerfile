# syntax=docker/dockerfile:1
# hsm-kms with SoftHSM2 as its HSM, running the compiled CLI (dist/). For a hardware HSM, install
# the vendor's PKCS#11 library in a derived image and set KMS_PKCS11_MODULE (hsm-config/README.md).
# README "Docker" walks through it: credentials, instances, endpoints.

# ---- build: pkcs11js is a native addon (C++ toolchain); tsc compiles src/ to dist/ ----
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# The lockfile was produced through a registry mirror that omits some platform-specific
# optional packages, which `npm ci` reports as "out of sync"; `npm install --no-save` then keeps
# every locked version (same fallback as scripts/setup.sh).
RUN (npm ci --no-audit --no-fund || npm install --no-save --no-audit --no-fund) \
 && test -f node_modules/pkcs11js/build/Release/pkcs11.node
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY scripts/build.mjs ./scripts/build.mjs
COPY src ./src
# dist/ (with the SQL migrations and the build stamp), then the dev dependencies go.
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# ---- runtime: no compiler, no sources, no tsx needed ----
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends softhsm2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production \
    KMS_DATA_DIR=/data \
    KMS_HOST=0.0.0.0 \
    KMS_PORT=8080 \
    KMS_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY hsm-config ./hsm-config
COPY scripts/docker-entrypoint.sh ./scripts/docker-entrypoint.sh
# The token files, PIN files, credentials and config live on the volume, owned by the unprivileged user.
RUN chmod +x scripts/docker-entrypoint.sh \
 && mkdir -p /data && chown node:node /data && chmod 700 /data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.KMS_PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/app/scripts/docker-entrypoint.sh"]
CMD ["node", "bin/kms.mjs", "serve"]
