/**
 * Owns what sensors report: observations. A sensor only observes; it fills an observation with
 * what it read and hands it to the pipeline, which matches and enforces. Fields a rule may need
 * but that cost I/O (SHA-256, script package) are filled by the sensor only when the compiled
 * matcher says it needs them (`Matcher.needs`), so the matcher itself stays pure.
 */
import type { TreeKey } from './install-reads.js';

/** Who owns a process or a file. */
export interface Owner {
  readonly uid: number;
  /** User name, or null when the uid has no name on this machine. */
  readonly user: string | null;
  /** Group names of the user (for policy exceptions); empty when unknown. */
  readonly groups: readonly string[];
  /** Home directory, when known. */
  readonly home: string | null;
}

/**
 * Code-signing facts an exec source reports with the exec (macOS Endpoint Security via eslogger):
 * what the kernel validated when it mapped the executable, not read from the file afterwards.
 */
export interface CodeSigning {
  /** Developer ID team identifier, or null (unsigned, ad-hoc signed, or an Apple platform binary). */
  readonly teamId: string | null;
  /** Signing identifier (e.g. `com.apple.ls`), or null when unsigned. */
  readonly signingId: string | null;
  /** Lower-case hex code directory hash, or null. */
  readonly cdhash: string | null;
  /** True for Apple's own platform binaries (their signing ids are matched as `platform:<id>`). */
  readonly platformBinary: boolean;
}

/** The npm package that an interpreter's script belongs to. */
export interface ScriptPackage {
  readonly name: string;
  readonly version: string | null;
  /** The package root directory (holds package.json). */
  readonly root: string;
  /** The script file the interpreter runs. */
  readonly script: string;
  /**
   * The script file's identity and owner as the resolver's walk found it (absent when the
   * interpreter was given the package directory): an open mark is only added to this very file.
   */
  readonly scriptFile?: {
    readonly dev: number;
    readonly ino: number;
    readonly owner: number;
    /** Owner of the package.json that named the package (a mark needs it to be the file's owner). */
    readonly packageOwner: number;
  };
}

export interface ProcessObservation {
  readonly kind: 'process';
  readonly pid: number;
  readonly ppid: number;
  /**
   * Start time: Linux = clock ticks since boot (field 22 of /proc/<pid>/stat); elsewhere the best
   * the source offers (ms since epoch). Together with pid it is the process identity: enforcement
   * re-reads it and refuses to signal a pid whose start time changed.
   */
  readonly startTime: number;
  /** `comm` (Linux, ≤15 chars) or the name ps-list reports. */
  readonly name: string;
  /** Real executable path (symlinks resolved), or null when unreadable. */
  readonly exe: string | null;
  /** Raw argv as read (NOT redacted: redact before storing; matching needs the original). */
  readonly argv: readonly string[];
  readonly owner: Owner;
  /** Controlling terminal device path (e.g. /dev/pts/3), or null. */
  readonly tty: string | null;
  /** Lower-case hex SHA-256 of `exe`; filled only when `Matcher.needs.sha256`. */
  readonly sha256?: string | null;
  /**
   * Canonical keys (content-markers.ts markerKey) of the policy's content markers found in `exe`;
   * filled only when `Matcher.needs.markers`; null when the executable could not be scanned.
   */
  readonly contentMarkers?: readonly string[] | null;
  /** Filled only when `Matcher.needs.scriptPackage` and the process is an interpreter running a script. */
  readonly scriptPackage?: ScriptPackage | null;
  /** Present when the exec source reports code-signing facts (macOS eslogger); absent elsewhere. */
  readonly signing?: CodeSigning;
  /** The kernel's exec timestamp (RawProcess.execNs): Linux exec events only. */
  readonly execNs?: number;
}

export type PackageManager =
  | 'npm'
  | 'pnpm'
  | 'yarn'
  | 'bun'
  | 'volta'
  | 'nvm'
  | 'fnm'
  | 'asdf'
  | 'mise'
  | 'homebrew'
  | 'npx'
  | 'other';

export interface PackageObservation {
  readonly kind: 'package';
  readonly ecosystem: 'npm';
  readonly name: string;
  /** From package.json; null when missing or not a valid semver string. */
  readonly version: string | null;
  /** The package directory (holds package.json). */
  readonly path: string;
  /** The global node_modules root it was found under. */
  readonly root: string;
  readonly manager: PackageManager;
  /** Its directory's owner; on a FUSE mount a user made, that user (whatever its daemon says). */
  readonly owner: Owner;
  /**
   * The install read gate's key of the tree it was found in (install-reads.ts `TreeKey`: the uid
   * whose home holds it), under which every look at it is gated — the quarantine action's too.
   * Absent when no install sensor found it (its owner's uid stands in).
   */
  readonly treeKey?: TreeKey;
  /**
   * True when the package directory is gone but the install left a trace: the installer itself
   * removed it (an install script was killed or failed, the install was interrupted) after the
   * sensor saw it, or bin links still point to where it was. `path` is where it was; `version` is
   * null when only links were left to name it. Absent on an installed package.
   */
  readonly removed?: boolean;
}

export interface PathObservation {
  readonly kind: 'path';
  /** The artifact (file or directory) that matched a policy path glob. */
  readonly path: string;
  readonly isDirectory: boolean;
  /** Its owner; on a FUSE mount a user made, that user (whatever its daemon says). */
  readonly owner: Owner;
  /** As PackageObservation.treeKey. */
  readonly treeKey?: TreeKey;
}

export type Observation = ProcessObservation | PackageObservation | PathObservation;
