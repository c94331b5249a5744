// A synthetic sparse 64-bit ELF with a `.bun` section, shaped like a Bun single-file executable
// where the content-marker scanner looks (src/policy/marker-regions.ts): ELF header, and the
// section table (null, .shstrtab, .bun) at the end of the file like a linker places it. Shared by
// bench/content-markers.bench.js and test/sensors/process/content-markers.test.ts. Plain
// JavaScript with no build step; types in synthetic-elf.d.ts. Not a bench (bench/run.js runs only
// *.bench.js).
import { closeSync, openSync, writeSync } from 'node:fs';

/**
 * Writes a sparse file of `size` bytes at `path`: an ELF64 header, a `.bun` section of `bunSize`
 * bytes at `bunAt`, and, when given, `payload.bytes` written at `payload.at`.
 */
export function writeElfWithBunSection(path, size, bunAt, bunSize, payload) {
  const names = Buffer.from('\0.shstrtab\0.bun\0', 'latin1');
  const namesAt = size - names.length;
  const shoff = namesAt - 3 * 64;
  const h = Buffer.alloc(64);
  h.writeUInt32BE(0x7f454c46, 0);
  h[4] = 2; // ELFCLASS64
  h[5] = 1; // little-endian
  h[6] = 1; // EV_CURRENT
  h.writeBigUInt64LE(BigInt(shoff), 0x28);
  h.writeUInt16LE(64, 0x3a);
  h.writeUInt16LE(3, 0x3c);
  h.writeUInt16LE(1, 0x3e);
  const sh = Buffer.alloc(3 * 64);
  const sec = (i, name, type, off, sz) => {
    sh.writeUInt32LE(name, i * 64);
    sh.writeUInt32LE(type, i * 64 + 4);
    sh.writeBigUInt64LE(BigInt(off), i * 64 + 0x18);
    sh.writeBigUInt64LE(BigInt(sz), i * 64 + 0x20);
  };
  sec(1, 1, 3, namesAt, names.length); // .shstrtab (SHT_STRTAB)
  sec(2, 11, 1, bunAt, bunSize); // .bun (SHT_PROGBITS)
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, h, 0, 64, 0);
    writeSync(fd, sh, 0, sh.length, shoff);
    writeSync(fd, names, 0, names.length, namesAt);
    if (payload) writeSync(fd, payload.bytes, 0, payload.bytes.length, payload.at);
  } finally {
    closeSync(fd);
  }
}
