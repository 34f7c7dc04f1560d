/** Retention as a gateway service (gateway/gateway.ts runs it beside MQTT ingestion). */
import type { GatewayContext, ServiceFactory } from '../services.js';
import { type RetentionConfig, retentionOptions } from './options.js';
import { RetentionService } from './service.js';

export function retentionFactories(config: Pick<RetentionConfig, 'retention.enabled'>): ServiceFactory[] {
  if (!config['retention.enabled']) return [];
  return [
    (ctx: GatewayContext) =>
      new RetentionService(ctx.client, ctx.keys, retentionOptions(ctx.config), {
        logger: ctx.logger,
        registry: ctx.registry,
        clock: ctx.clock,
        lossWindowMs: ctx.config['health.lossWindow'],
      }),
  ];
}
