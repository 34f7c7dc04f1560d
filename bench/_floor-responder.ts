/**
 * The floor of the commands benchmark, in its own process like the agent: a
 * bare XREADGROUP -> XADD responder (no ledger, no journal, no dedup, no ack).
 * Args: redis port, request stream, reply stream.
 */
import { Redis } from 'ioredis';

const [port, requests, replies] = process.argv.slice(2) as [string, string, string];
const reader = new Redis({ host: '127.0.0.1', port: Number(port) });
const writer = new Redis({ host: '127.0.0.1', port: Number(port) });
await reader.xgroup('CREATE', requests, 'floor', '0', 'MKSTREAM').catch(() => undefined);
process.stdout.write('ready\n');
for (;;) {
  const reply = (await reader.xreadgroup(
    'GROUP',
    'floor',
    'r',
    'COUNT',
    100,
    'BLOCK',
    1000,
    'STREAMS',
    requests,
    '>',
  )) as [string, [string, string[]][]][] | null;
  for (const [, fields] of reply?.[0]?.[1] ?? []) await writer.xadd(replies, '*', 'i', fields[1]!);
}
