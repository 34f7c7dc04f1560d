/** Typed errors of mapping files: each names the file and the field to change. */
import { FleetError } from '#shared/errors.js';

/** A mapping file is missing, unreadable, or has a field that is malformed. */
export class MappingError extends FleetError {
  readonly code = 'MAPPING_INVALID';
  constructor(
    /** The file (or built-in name) the mapping came from. */
    readonly source: string,
    /** Path of the bad field, e.g. `rules[2].readings[0].value`; empty for the file as a whole. */
    readonly field: string,
    readonly detail: string,
  ) {
    super(`mapping ${source}${field ? `: field "${field}"` : ''} ${detail}`);
  }
}
