# One image for every program of the repository (gateway, fleet simulator, agent, ctl):
# the compose file picks the program with its command (npm run <script>).
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
# tsx (a dev dependency) runs the TypeScript sources directly.
RUN npm ci --no-audit --no-fund
COPY shared ./shared
COPY device ./device
COPY gateway ./gateway
COPY firmware-sim ./firmware-sim
COPY ctl ./ctl
COPY tsconfig.json ./
USER node
CMD ["npm", "run", "gateway"]
