/**
 * Headless Chromium from Debian (/usr/bin/chromium) driven by playwright-core:
 * no browser download. The flags keep it off this machine's closed network
 * (background networking, component updates, sync) and run it as root.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** A browser with a new, empty profile, removed again by close(). */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)`);
  }
  const profileDir = mkdtempSync(join(tmpdir(), 'chromium-profile-'));
  // playwright-core passes the profile as --user-data-dir.
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1100 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      rmSync(profileDir, { recursive: true, force: true });
    },
  };
}

/** Sends a command from the dashboard's form; returns the command id its API answered with (202). */
export async function sendFromForm(
  page: Page,
  deviceId: string,
  name: string,
  args: string,
): Promise<string> {
  await page.fill('#cmd-device', deviceId);
  await page.fill('#cmd-name', name);
  await page.fill('#cmd-args', args);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/commands') && r.request().method() === 'POST'),
    page.click('#cmd-send'),
  ]);
  if (response.status() !== 202) throw new Error(`the form's command was not accepted: ${response.status()}`);
  return ((await response.json()) as { commandId: string }).commandId;
}
