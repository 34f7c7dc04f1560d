/** The latest-state projection as a gateway service (gateway/gateway.ts runs it beside MQTT ingestion). */
import type { GatewayContext, ServiceFactory } from '../services.js';
import { type ProjectionConfig, projectionOptions } from './options.js';
import { ProjectionService } from './service.js';
import { ProjectionThread } from './thread.js';

export function projectionFactories(
  config: Pick<ProjectionConfig, 'projection.enabled'> & Partial<Pick<ProjectionConfig, 'projection.thread'>>,
): ServiceFactory[] {
  if (!config['projection.enabled']) return [];
  const onThread = config['projection.thread'] ?? true;
  return [
    (ctx: GatewayContext) => {
      const consumer = ctx.config['projection.consumer'] || ctx.gatewayId;
      if (onThread)
        return new ProjectionThread(
          { config: ctx.config, consumer, gatewayId: ctx.gatewayId, logLevel: ctx.config['log.level'] },
          ctx.registry,
          ctx.logger,
        );
      return new ProjectionService(
        ctx.client,
        ctx.keys,
        projectionOptions({ ...ctx.config, 'projection.consumer': consumer }),
        {
          logger: ctx.logger,
          registry: ctx.registry,
          clock: ctx.clock,
          lossWindowMs: ctx.config['health.lossWindow'],
        },
      );
    },
  ];
}
