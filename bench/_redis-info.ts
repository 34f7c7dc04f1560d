/** What the bench tools read from Redis's INFO. */
import type { Redis } from 'ioredis';

/** CPU seconds (user + system) the server has used since it started (INFO cpu). */
export async function redisCpuSeconds(client: Redis): Promise<number> {
  const info = await client.info('cpu');
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? Number.NaN);
  return field('used_cpu_user') + field('used_cpu_sys');
}
