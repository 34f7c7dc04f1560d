/**
 * Small files that must survive a power loss whole: written to a temporary
 * file, fsynced, renamed over the old one, and the directory fsynced. The
 * rename alone is atomic for a crash of the process, but until the directory
 * is fsynced a power loss can bring back the old name (or neither), see
 * rename(2) and fsync(2) ("Calling fsync() does not necessarily ensure that
 * the entry in the directory containing the file has also reached disk").
 */
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** Makes a created, renamed or deleted name in `dir` durable (fsync of the directory). */
export function syncDirectory(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch {
    // Some platforms and filesystems cannot fsync a directory; the file itself is fsynced.
  } finally {
    closeSync(fd);
  }
}

/** Replaces `file` with `text` atomically and durably (write, fsync, rename, fsync the directory). */
export function writeFileDurably(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  syncDirectory(dirname(file));
}
