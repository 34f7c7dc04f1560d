/** The latest-state projection as a gateway service (gateway/gateway.ts runs it beside MQTT ingestion). */
import type { GatewayContext, ServiceFactory } from '../gateway.js';
import { type ProjectionConfig, projectionOptions } from './options.js';
import { ProjectionService } from './service.js';

export function projectionFactories(config: Pick<ProjectionConfig, 'projection.enabled'>): ServiceFactory[] {
  if (!config['projection.enabled']) return [];
  return [
    (ctx: GatewayContext) =>
      new ProjectionService(
        ctx.client,
        ctx.keys,
        projectionOptions({
          ...ctx.config,
          'projection.consumer': ctx.config['projection.consumer'] || ctx.gatewayId,
        }),
        { logger: ctx.logger, registry: ctx.registry, clock: ctx.clock },
      ),
  ];
}
