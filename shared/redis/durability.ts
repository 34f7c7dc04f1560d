/**
 * What a write must reach before this process acknowledges it (docs/scaling.md §2):
 * the master alone (`local`, no ReplicaWait), or also `replicas` replicas, confirmed by
 * WAIT. One level per process (`producer.durability`), for everything it acknowledges:
 * telemetry batches, commands it queues, command results it publishes.
 *
 * WAIT counts the replicas that have every write made before it on the same
 * connection, so it is pipelined right behind the write: in a Cluster the pipeline
 * goes to the node of the write's slot, which is the node whose replicas count.
 */
import type { ChainableCommander } from 'ioredis';
import { ReplicationError } from '../errors.js';
import { type RedisClient, refreshOnRedirection } from './connect.js';

export interface ReplicaWait {
  readonly replicas: number;
  readonly timeoutMs: number;
}

/** The process's level from its producer options; undefined at `local`. */
export function replicaWaitOf(o: {
  durability: 'local' | 'replicated';
  replicas: number;
  replicaTimeoutMs: number;
}): ReplicaWait | undefined {
  return o.durability === 'replicated' ? { replicas: o.replicas, timeoutMs: o.replicaTimeoutMs } : undefined;
}

/** Appends WAIT to a pipeline whose writes must be replicated (nothing at `local`). */
export function pipelineWait(pipeline: ChainableCommander, wait: ReplicaWait | undefined): void {
  if (wait) pipeline.wait(wait.replicas, wait.timeoutMs);
}

/** Throws ReplicationError when the pipeline's closing WAIT counted too few replicas. */
export function checkWait(
  replies: ReadonlyArray<[Error | null, unknown]>,
  wait: ReplicaWait | undefined,
): void {
  if (!wait) return;
  const acked = Number(replies[replies.length - 1]?.[1] ?? 0);
  if (acked < wait.replicas) throw new ReplicationError(wait.replicas, acked);
}

/**
 * Runs one write (`write` adds it to the pipeline) with WAIT behind it; answers the
 * write's reply. Throws the write's error, or
 * ReplicationError: the write may then be on the master only, so the caller treats it
 * as not acknowledged (every write sent this way is safe to send again).
 */
export async function writeDurably<T>(
  client: RedisClient,
  wait: ReplicaWait,
  write: (pipeline: ChainableCommander) => void,
): Promise<T> {
  const pipeline = client.pipeline();
  write(pipeline);
  pipelineWait(pipeline, wait);
  const replies = (await pipeline.exec()) ?? [];
  for (const [err] of replies) {
    if (!err) continue;
    // A pipeline is not redirected when its replies differ (shared/redis/connect.ts).
    refreshOnRedirection(client, err);
    throw err;
  }
  checkWait(replies, wait);
  return replies[0]?.[1] as T;
}
