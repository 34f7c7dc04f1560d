# One image for every program of the repository (gateway, fleet simulator, agent, ctl):
# the compose file picks the program with its command (npm run <script>).
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
# esbuild (a dev dependency) bundles the programs at start; tsx runs ctl and the demo.
RUN npm ci --no-audit --no-fund
COPY shared ./shared
COPY device ./device
COPY gateway ./gateway
COPY firmware-sim ./firmware-sim
COPY ctl ./ctl
COPY scripts ./scripts
COPY tsconfig.json ./
# npm run gateway/sim/agent bundle the program into dist/ at start (scripts/launch.mjs).
RUN mkdir dist && chown node:node dist
USER node
CMD ["npm", "run", "gateway"]
