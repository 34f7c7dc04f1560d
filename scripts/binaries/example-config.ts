/**
 * The commented example config shipped beside the binaries
 * (dist/bin/agent.example.yaml) and installed as /etc/streamfleet/agent.example.yaml:
 * generated from the agent's schema at build time, so it can never name an
 * option that does not exist or show a default that is not the real one.
 */
import { envName, flagName, type Schema } from '#shared/config/schema.js';

/** JSON is YAML; an unset option shows as "" (uncommented, "" means unset too). */
function yamlValue(value: unknown): string {
  return value === undefined ? '""' : JSON.stringify(value);
}

export function exampleConfig(schema: Schema, envPrefix: string, title: string): string {
  const lines = [
    `# ${title}`,
    '#',
    '# Every option with its default, commented out. Uncomment and change what you need.',
    '# Dotted keys may also be nested (device: {id: pi-07}). Precedence:',
    '# defaults < this file < environment variables < command-line flags.',
    '',
  ];
  for (const [key, spec] of Object.entries(schema)) {
    const values = spec.type === 'enum' ? ` One of: ${spec.values.join(', ')}.` : '';
    const unit = spec.type === 'duration' ? ' (milliseconds, or "5s", "2m")' : '';
    const unset = spec.default === undefined ? ' (unset by default)' : '';
    lines.push(`# ${spec.doc}${values}${unit}${unset}`);
    lines.push(`# env ${spec.env ?? envName(envPrefix, key)}, flag --${flagName(key)}`);
    lines.push(`# ${key}: ${yamlValue(spec.default)}`, '');
  }
  return lines.join('\n');
}
