/**
 * The verdict cache's hash (native/execperm/siphash.h, included by execperm.c) against the
 * published SipHash-2-4 test vectors: key 00 01 … 0f, message 00 01 … (len − 1), 64-bit output
 * (the SipHash paper's appendix and the reference implementation's vectors.h, bytes of the output
 * in little-endian order). The header itself is compiled into a small program here, so the
 * addon exports nothing for the test; a slip in a rotation or in the length byte would still hash
 * "randomly", and only the vectors tell.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import { compileC } from '../sensors/hostile-fs.js';

const dir = tempDir('tgsip-');
const HEADER_DIR = join(import.meta.dirname, '..', '..', 'native', 'execperm');

/** Prints siphash_2_4(key 00..0f, message 00..len-1) for every len in argv, output bytes in hex. */
const PROGRAM = `
#include <stdio.h>
#include <stdlib.h>
#include "siphash.h"
int main(int argc, char **argv) {
  unsigned char msg[64], key[16];
  for (int i = 0; i < 64; i++) msg[i] = (unsigned char)i;
  for (int i = 0; i < 16; i++) key[i] = (unsigned char)i;
  uint64_t k0 = 0, k1 = 0;
  for (int i = 0; i < 8; i++) k0 |= (uint64_t)key[i] << (8 * i), k1 |= (uint64_t)key[8 + i] << (8 * i);
  for (int a = 1; a < argc; a++) {
    uint64_t h = siphash_2_4(k0, k1, msg, (size_t)atoi(argv[a]));
    for (int j = 0; j < 8; j++) printf("%02x", (unsigned)((h >> (8 * j)) & 0xff));
    printf("\\n");
  }
  return 0;
}
`;

/** Message length → the published output (vectors_sip64). */
const VECTORS: ReadonlyArray<[number, string]> = [
  [0, '310e0edd47db6f72'],
  [1, 'fd67dc93c539f874'],
  [7, '37d1018bf50002ab'],
  [8, '6224939a79f5f593'],
  [9, 'b0e4a90bdf82009e'],
  [15, 'e545be4961ca29a1'], // the paper's worked example: a129ca6149be45e5
  [16, 'db9bc2577fcc2a3f'],
  [31, '42c341d8fa92d832'],
  [32, 'ce7cf2722f512771'],
  [63, '724506eb4c328a95'],
];

describe('SipHash-2-4 of the verdict cache (native/execperm/siphash.h)', () => {
  it('gives the published test vectors (empty, partial and whole blocks)', () => {
    const bin = compileC(dir, 'siphash-vectors', PROGRAM, [`-I${HEADER_DIR}`, '-Wall', '-Wextra', '-Werror']);
    const out = execFileSync(
      bin,
      VECTORS.map(([len]) => String(len)),
      { encoding: 'utf8' },
    );
    expect(out.trim().split('\n')).toEqual(VECTORS.map(([, hex]) => hex));
  });
});
