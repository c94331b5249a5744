// Types of synthetic-elf.js (imported by TypeScript tests).
export function writeElfWithBunSection(
  path: string,
  size: number,
  bunAt: number,
  bunSize: number,
  payload?: { at: number; bytes: Buffer },
): void;
