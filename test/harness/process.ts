/** The harness's child processes: tracked, killed on exit (shared with the demo). */
export * from '#shared/process/children.js';
