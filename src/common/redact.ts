/**
 * Owns the redaction of secrets in command lines before they are stored or logged.
 *
 * Command lines are hostile input: they can be huge, binary, or carry tokens and passwords that
 * must never leave the machine, and every user's redacted argv is readable on the public control
 * socket. `redactArgv` is the one place that decides what is kept; every event field that holds a
 * command line passes through it. What it recognises is listed in docs/security.md ("What is
 * redacted") and proven by test/common/redact.test.ts:
 * - secret-named options, in every spelling: `--db-pass=v`, `--token v`, `-storepass v`,
 *   `--key v`, env-style `AWS_SECRET_ACCESS_KEY=v`, `password=v` inside DSNs and query strings;
 * - program-specific short options: `mysql -pSECRET`, `curl -u user:pw`, `redis-cli -a pw`, …;
 * - HTTP headers passed as arguments (`Authorization: Bearer v`, `Cookie: v`, `x-api-key: v`);
 * - credentials in URLs (`scheme://user:pw@`, `scheme://TOKEN@`, `?access_token=v`, `&sig=v`);
 * - well-known token shapes anywhere (GitHub, GitLab, Slack, AWS, Google, OpenAI/Anthropic, Stripe,
 *   npm, PyPI, Hugging Face, JWTs, PEM private key blocks);
 * - the same rules inside shell command strings (`sh -c "mysql -pX …"`), token by token.
 * Over-redaction is preferred to a leak. Every pattern is linear (no nested or ambiguous
 * quantifiers) and each argument is cut before it is scanned, so the cost is bounded by
 * MAX_ARGS × (MAX_ARG_CHARS + SCAN_SLACK_CHARS) characters whatever the input.
 */

/** Stored in place of a secret. */
export const REDACTED = '[REDACTED]';

/** One argument longer than this is cut: 4 KiB keeps real paths and flags, drops pasted blobs. */
export const MAX_ARG_CHARS = 4096;
/** At most this many arguments are kept; the rest are summarised as a count. */
export const MAX_ARGS = 256;
/** Characters past the cut that are still scanned, so a secret straddling the cut is still found. */
const SCAN_SLACK_CHARS = 512;
/**
 * Words of one string that go through the option rules (value rules cover all of it): a shell
 * command is a few dozen words; the cap keeps a string of 2,000 one-letter words from costing
 * 2,000 rounds of option parsing.
 */
const MAX_WORDS = 256;
/** A name (option, variable, header, query key) longer than this is not a name we recognise. */
const MAX_NAME_CHARS = 64;

/** A name component that makes the value secret wherever it stands (`--db-password`, `x-api-key`). */
const SECRET_COMPONENTS = new Set([
  'password',
  'passwd',
  'passphrase',
  'pass',
  'pwd',
  'pw',
  'secret',
  'secrets',
  'token',
  'apikey',
  'credential',
  'credentials',
  'auth',
  'authorization',
  'cookie',
  'bearer',
  'dsn',
  'sig',
  'signature',
  'privatekey',
  'passin',
  'passout',
]);
/** Glued spellings: a name ending in one of these is secret (`PGPASSWORD`, `-storepass`, `accountkey`). */
const SECRET_SUFFIXES = [
  'password',
  'passwd',
  'passphrase',
  'pass',
  'pwd',
  'secret',
  'token',
  'apikey',
  'accesskey',
  'secretkey',
  'privatekey',
  'accountkey',
  'masterkey',
  'signingkey',
  'encryptionkey',
  'licensekey',
  'subscriptionkey',
  'authkey',
  'signature',
  'credential',
  'credentials',
  'cookie',
  'oauth',
];
/**
 * A last component that names *about* a secret, not the secret (`--password-file`, `--token-limit`,
 * `--auth-type`): such options stay readable.
 */
const REFERENCE_COMPONENTS = new Set([
  'file',
  'files',
  'path',
  'dir',
  'directory',
  'prompt',
  'stdin',
  'env',
  'length',
  'len',
  'helper',
  'type',
  'mode',
  'method',
  'policy',
  'command',
  'cmd',
  'program',
  'hint',
  'min',
  'max',
  'limit',
  'count',
  'size',
  'expiry',
  'expires',
  'expiration',
  'ttl',
  'timeout',
  'name',
  'arn',
  'url',
  'uri',
  'endpoint',
  'header',
  'format',
  'store',
  'manager',
  'source',
  'scope',
  'version',
]);
/** Query-string keys that are secret besides the secret names (OAuth authorization codes). */
const SECRET_QUERY_KEYS = new Set(['code', 'jwt', 'session', 'sessionid', 'sid', 'key']);

/** Every secret name contains one of these (a cheap first test, for names and whole strings). */
const SECRET_HINT = /pass|pw|secret|token|key|cred|auth|cookie|bearer|dsn|sig|code|jwt|session|sid/i;

/** True when an option, variable, header or parameter called `name` carries a secret value. */
export function isSecretName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME_CHARS) return false;
  const lower = name.toLowerCase();
  if (!SECRET_HINT.test(lower)) return false; // most names
  const parts = lower.split(/[-_.\s]+/).filter(Boolean);
  const last = parts.at(-1);
  if (last === undefined || parts[0] === 'no') return false; // `--no-password` is a switch
  if (REFERENCE_COMPONENTS.has(last)) return false;
  if (last === 'key') return true; // `--key`, `--api-key`, `OPENAI_API_KEY`, `--ssh-key`
  if (parts.some((p) => SECRET_COMPONENTS.has(p))) return true;
  const glued = parts.join('');
  return SECRET_SUFFIXES.some((s) => glued.endsWith(s));
}

/** Short options whose value is a secret, per program (basename, `.exe` dropped). */
interface ProgramOptions {
  /**
   * `-pSECRET`: the value glued to the letter is a secret. A separate next argument is redacted too
   * unless it is an option: mysql reads it as the database after a password prompt, but a
   * password typed there by mistake is worth more than a database name.
   */
  readonly glued?: string;
  /** `-a SECRET` and `-aSECRET`. */
  readonly both?: string;
  /** `user/password@db` as a positional argument (Oracle tools). */
  readonly oracleLogin?: boolean;
  /** A shell: the argument after `-c` (or a cluster like `-lc`) is a command string, redacted word by word. */
  readonly shell?: boolean;
  /** Options that apply only after a subcommand (`docker login -p`, while `docker run -p` is a port). */
  readonly subcommands?: Readonly<Record<string, ProgramOptions>>;
}

const MYSQL: ProgramOptions = { glued: 'p' };
const PROGRAMS: Readonly<Record<string, ProgramOptions>> = {
  mysql: MYSQL,
  mysqldump: MYSQL,
  mysqladmin: MYSQL,
  mysqlimport: MYSQL,
  mysqlcheck: MYSQL,
  mysqlshow: MYSQL,
  mysqlslap: MYSQL,
  mysqlpump: MYSQL,
  mysqlsh: MYSQL,
  mariadb: MYSQL,
  'mariadb-dump': MYSQL,
  'mariadb-admin': MYSQL,
  '7z': { glued: 'p' },
  '7za': { glued: 'p' },
  '7zr': { glued: 'p' },
  rar: { glued: 'p' },
  unrar: { glued: 'p' },
  sshpass: { both: 'p' },
  'redis-cli': { both: 'a' },
  'valkey-cli': { both: 'a' },
  mongo: { both: 'p' },
  mongosh: { both: 'p' },
  mongodump: { both: 'p' },
  mongorestore: { both: 'p' },
  docker: { subcommands: { login: { both: 'p' } } },
  podman: { subcommands: { login: { both: 'p' } } },
  nerdctl: { subcommands: { login: { both: 'p' } } },
  sqlcmd: { both: 'P' },
  bcp: { both: 'P' },
  zip: { both: 'P' },
  unzip: { both: 'P' },
  mosquitto_pub: { both: 'P' },
  mosquitto_sub: { both: 'P' },
  ldapsearch: { both: 'w' },
  ldapmodify: { both: 'w' },
  ldapadd: { both: 'w' },
  ldapdelete: { both: 'w' },
  ldappasswd: { both: 'wsa' },
  'ssh-keygen': { both: 'NP' },
  openssl: { both: 'k' },
  curl: { both: 'b' }, // -b/--cookie: a cookie string (or a file name, redacted too)
  sh: { shell: true },
  bash: { shell: true },
  dash: { shell: true },
  zsh: { shell: true },
  ksh: { shell: true },
  fish: { shell: true },
  su: { shell: true },
  az: { both: 'p' }, // az login --service-principal -u id -p secret
  sqlplus: { oracleLogin: true },
  rman: { oracleLogin: true },
  expdp: { oracleLogin: true },
  impdp: { oracleLogin: true },
  sqlldr: { oracleLogin: true },
};

/** Options whose value is `user:password` (curl, wget, lftp `user,pass`, smbclient `user%pass`). */
const USER_PASSWORD_OPTIONS = new Set(['u', 'U', 'user', 'proxy-user', 'http-user', 'creds', 'userpass']);

/** Whole-token patterns that are secrets wherever they appear (each linear: literal prefix, one class run). */
const SECRET_SHAPES: readonly RegExp[] = [
  /\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}/g, // Anthropic sk-ant-…, OpenAI sk-proj-… / sk-…
  /\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}/g, // Stripe
  /\bwhsec_[A-Za-z0-9]{20,}/g, // Stripe webhook secret
  /\bgh[pousr]_[A-Za-z0-9]{20,}/g, // GitHub
  /\bgithub_pat_[A-Za-z0-9_]{20,}/g,
  /\bgl(?:pat|ptt|dt|rt|cbt|oas|soat)-[A-Za-z0-9_-]{20,}/g, // GitLab
  /\bxox[abposre]-[A-Za-z0-9-]{10,}/g, // Slack
  /\bxapp-[A-Za-z0-9-]{10,}/g,
  /(hooks\.slack\.com\/services\/)[A-Za-z0-9/_-]+/g,
  /\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b/g, // AWS access key id
  /\bAIza[0-9A-Za-z_-]{30,}/g, // Google API key
  /\bya29\.[0-9A-Za-z_-]{20,}/g, // Google OAuth access token
  /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g, // JWT
  /\bnpm_[A-Za-z0-9]{30,}/g, // npm
  /\bpypi-[A-Za-z0-9_-]{50,}/g, // PyPI
  /\bhf_[A-Za-z0-9]{30,}/g, // Hugging Face
  /\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}/g, // SendGrid
  /\bdop_v1_[a-f0-9]{64}\b/g, // DigitalOcean
  /\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b/g, // Shopify
  /\bAGE-SECRET-KEY-1[0-9A-Z]{50,}/g, // age
  /\bhv[sbr]\.[A-Za-z0-9_-]{24,}/g, // HashiCorp Vault
  /\b(pass:)[^\s'"]+/g, // OpenSSL passphrase argument `pass:secret`
];

/**
 * A PEM private key block (RSA, EC, OPENSSH, ENCRYPTED, PGP … BLOCK), or its start when the rest
 * was cut. The body may hold dashes (`Proc-Type: 4,ENCRYPTED`), so it runs to `-----END`, one
 * character at a time (no nested quantifier).
 */
const PEM_PRIVATE_KEY =
  /-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY[A-Z ]{0,10}-----(?:[^-]|-(?!----END ))*(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY[A-Z ]{0,10}-----)?/g;

/**
 * `Bearer …` / `Basic …` anywhere (shell strings, git extraheader values); the value must hold a
 * digit or one of `.+/=` so that prose ("Basic authentication") stays readable.
 */
const AUTH_SCHEME_VALUE = /\b(Bearer|Basic)(\s+)(?=[A-Za-z_~-]*[0-9.+/=])[A-Za-z0-9._~+/=-]{8,}/g;
/** The auth schemes kept readable before a redacted Authorization value. */
const AUTH_SCHEMES = /^(?:bearer|basic|digest|token|negotiate|splunk|apikey|sso-key|aws4-hmac-sha256)$/i;

/** Longest URL scheme looked for before `://` (`mongodb+srv`, `git+ssh`, `jdbc:mysql` ends in `mysql`). */
const MAX_SCHEME_CHARS = 32;
/** `key=value` in a query string or a `;`/`&`-separated connection string. */
const PARAM = /([?&;])([A-Za-z0-9_. -]{1,64})=([^&#;\s'"]*)/g;
/**
 * `name=value` anywhere in a string (`//registry/:_authToken=v`, `a=1,password=v`): a name starts
 * only where the previous character cannot be part of one, so a long run is scanned once.
 */
const INNER_ASSIGNMENT = /(?<![A-Za-z0-9_.-])([A-Za-z_][A-Za-z0-9_.-]{0,63})=([^&#;\s'",]+)/g;
/** A JSON member with a string value (`curl -d '{"password":"v"}'`). */
const JSON_MEMBER = /"([A-Za-z0-9_.-]{1,64})"(\s*:\s*)"([^"]*)"/g;
/** The word before a bare secret-named key whose value follows it (`npm config set _authToken v`). */
const CONFIG_SETTERS = new Set([
  'set',
  'config',
  '--global',
  '--local',
  '--system',
  '--add',
  '--replace-all',
]);

/** A header passed as one argument (curl -H 'Name: value'). */
const HEADER = /^(\s*)([A-Za-z0-9-]{1,64})(\s*:\s*)([\s\S]*)$/;
/** An option: `--name`, `-name`, with an optional `=value`. */
const OPTION = /^(--?)([A-Za-z][A-Za-z0-9._-]{0,63})(?:=([\s\S]*))?$/;
/** An env-style assignment `NAME=value`. */
const ASSIGNMENT = /^([A-Za-z_][A-Za-z0-9_.-]{0,127})=([\s\S]*)$/;

function isSecretHeader(name: string): boolean {
  return isSecretName(name) || /^(?:set-)?cookie$/i.test(name);
}

/** Redacts a header's value, keeping an Authorization scheme readable. */
function redactHeaderValue(value: string): string {
  const space = value.indexOf(' ');
  if (space > 0 && AUTH_SCHEMES.test(value.slice(0, space))) return `${value.slice(0, space + 1)}${REDACTED}`;
  return REDACTED;
}

/** Redacts what follows the user in `user:pass`, `user%pass` (smbclient) or `user,pass` (lftp). */
function redactUserPassword(value: string): string {
  if (/^\d+:\d+$/.test(value)) return value; // uid:gid (docker -u 1000:1000)
  const sep = value.search(/[:%,]/);
  return sep < 0 ? value : `${value.slice(0, sep + 1)}${REDACTED}`;
}

/** Value rules: what is a secret inside any string, whatever option it belongs to. */
function redactValue(s: string): string {
  let out = s.replace(PEM_PRIVATE_KEY, REDACTED);
  const header = HEADER.exec(out);
  if (header && isSecretHeader(header[2] as string))
    return `${header[1]}${header[2]}${header[3]}${redactHeaderValue(header[4] as string)}`;
  if (out.includes('://')) out = redactUrlUserinfo(out);
  if (SECRET_HINT.test(out)) out = redactNamedValues(out);
  out = out.replace(AUTH_SCHEME_VALUE, `$1$2${REDACTED}`);
  for (const shape of SECRET_SHAPES)
    out = out.replace(shape, (_m, keep?: string) =>
      typeof keep === 'string' ? `${keep}${REDACTED}` : REDACTED,
    );
  return out;
}

/** `name=value` in query strings, assignments, JSON members and `;` segments, for secret names. */
function redactNamedValues(s: string): string {
  let out = s.replace(PARAM, (m, sep: string, key: string, value: string) =>
    value !== '' && (isSecretName(key.trim()) || SECRET_QUERY_KEYS.has(key.trim().toLowerCase()))
      ? `${sep}${key}=${REDACTED}`
      : m,
  );
  out = out.replace(INNER_ASSIGNMENT, (m, key: string) => (isSecretName(key) ? `${key}=${REDACTED}` : m));
  if (out.includes('"'))
    out = out.replace(JSON_MEMBER, (m, key: string, colon: string) =>
      isSecretName(key) ? `"${key}"${colon}"${REDACTED}"` : m,
    );
  if (out.includes(';')) out = redactSegments(out);
  return out;
}

/**
 * Credentials in URLs: `scheme://user:pass@` (the user may be empty: `redis://:pw@host`) keeps the
 * user; `scheme://TOKEN@` (Sentry DSNs, git over https) loses the token. Walks from each `://`
 * to the end of its authority, so every character is looked at a bounded number of times.
 */
function redactUrlUserinfo(s: string): string {
  let out = '';
  let last = 0;
  for (let i = s.indexOf('://'); i >= 0; i = s.indexOf('://', i + 3)) {
    let b = i;
    while (b > 0 && i - b < MAX_SCHEME_CHARS && /[A-Za-z0-9+.-]/.test(s[b - 1] as string)) b--;
    if (b === i || !/[A-Za-z]/.test(s[b] as string)) continue;
    const start = i + 3;
    let end = start;
    while (end < s.length && !/[/?#\s]/.test(s[end] as string)) end++;
    const atInAuthority = s.slice(start, end).lastIndexOf('@'); // not s.lastIndexOf: that walks back past start
    if (atInAuthority < 0) continue;
    const at = start + atInAuthority;
    const userinfo = s.slice(start, at);
    const colon = userinfo.indexOf(':');
    let redacted: string;
    if (colon >= 0 && colon < userinfo.length - 1) redacted = `${userinfo.slice(0, colon + 1)}${REDACTED}`;
    else if (colon < 0 && /^[A-Za-z0-9_-]{20,}$/.test(userinfo)) redacted = REDACTED;
    else continue;
    out += `${s.slice(last, start)}${redacted}`;
    last = at;
  }
  return out + s.slice(last);
}

/** `Server=x;User ID=u;Password=p;` (ADO.NET, JDBC, Azure): the first segment has no `;` before it. */
function redactSegments(s: string): string {
  return s
    .split(';')
    .map((seg) => {
      const eq = seg.indexOf('=');
      if (eq <= 0) return seg;
      return isSecretName(seg.slice(0, eq).trim()) ? `${seg.slice(0, eq + 1)}${REDACTED}` : seg;
    })
    .join(';');
}

/** What the previous token asked of the next one. */
type Expect = 'none' | 'secret' | 'secret-word' | 'user-password' | 'auth-scheme' | 'shell';

/** Redacts a sequence of tokens (an argv, or the words of a shell command string). */
class Redactor {
  private expect: Expect = 'none';
  private program: ProgramOptions | null = null;
  private previous = '';

  /**
   * @param words true for the words of one string: value rules (URLs, shapes, `name=value`) are
   * then left to one pass over the whole string instead of one per word.
   */
  constructor(private readonly words = false) {}

  token(raw: string): string {
    // in shell strings, quotes stay around the word; classification looks inside them
    const m = /^(['"]?)([\s\S]*?)(['"]?)$/.exec(raw) as RegExpExecArray;
    const [, open = '', core = '', close = ''] = m;
    const wrap = (s: string): string => `${open}${s}${close}`;
    const expect = this.expect;
    const previous = this.previous;
    this.expect = 'none';
    this.previous = core;
    if (expect === 'secret' && !core.startsWith('--')) return wrap(REDACTED);
    if (expect === 'secret-word' && !core.startsWith('-') && core !== '') return wrap(REDACTED);
    if (expect === 'user-password' && !core.startsWith('-'))
      return wrap(core.includes('://') ? redactValue(core) : redactUserPassword(core));
    if (expect === 'shell') return wrap(redactWords(core));
    if (expect === 'auth-scheme') {
      if (AUTH_SCHEMES.test(core)) {
        this.expect = 'secret';
        return raw;
      }
      return wrap(REDACTED);
    }
    // `git config user.password v`, `aws configure set aws_secret_access_key v`
    if (CONFIG_SETTERS.has(previous) && /^[A-Za-z0-9_.:/-]{1,128}$/.test(core) && isSecretName(core)) {
      this.expect = 'secret';
      return raw;
    }
    return wrap(this.classify(core));
  }

  private classify(arg: string): string {
    const base = (arg.split(/[/\\]/).at(-1) ?? '').replace(/\.exe$/i, '').toLowerCase();
    if (Object.hasOwn(PROGRAMS, base)) {
      this.program = PROGRAMS[base] as ProgramOptions;
      return arg;
    }
    const sub = this.program?.subcommands;
    if (sub && Object.hasOwn(sub, arg)) {
      this.program = sub[arg] as ProgramOptions;
      return arg;
    }
    // a header name alone (words of a shell string: "Authorization:" "Bearer" "x")
    const headerName = /^([A-Za-z0-9-]{1,64}):$/.exec(arg);
    if (headerName && isSecretHeader(headerName[1] as string)) {
      this.expect = /^(?:proxy-)?authorization$/i.test(headerName[1] as string) ? 'auth-scheme' : 'secret';
      return arg;
    }
    const short = /^-([A-Za-z0-9])([\s\S]*)$/.exec(arg);
    if (short) {
      const done = this.shortOption(arg, short[1] as string, short[2] as string);
      if (done !== null) return done;
    }
    const opt = OPTION.exec(arg);
    if (opt) return this.option(arg, opt[1] as string, opt[2] as string, opt[3]);
    if (this.program?.oracleLogin) {
      const login = /^([^/\s@]{1,128})\/([^@\s]+)(@.*)?$/.exec(arg);
      if (login) return `${login[1]}/${REDACTED}${login[3] ?? ''}`;
    }
    const assignment = ASSIGNMENT.exec(arg);
    if (assignment) {
      const [, name = '', value = ''] = assignment;
      if (isSecretName(name) && value !== '') return `${name}=${REDACTED}`;
      return this.words ? arg : `${name}=${redactText(value)}`;
    }
    return this.words ? arg : redactText(arg);
  }

  /**
   * `-X`, `-Xvalue`: the program-specific meanings (`mysql -pSECRET`, `redis-cli -a v`, `sh -c cmd`)
   * and `-u user:pw`. Null when the option means nothing special (it is then read as a long one).
   */
  private shortOption(arg: string, letter: string, glued: string): string | null {
    const p = this.program;
    if (p?.shell && glued === '' && letter === 'c') {
      this.expect = 'shell';
      return arg;
    }
    if (p?.shell && /^[a-z]*c[a-z]*$/.test(letter + glued) && !arg.includes('=')) {
      this.expect = 'shell'; // -lc, -ec
      return arg;
    }
    if (p && glued !== '' && (p.glued?.includes(letter) || p.both?.includes(letter)))
      return `-${letter}${REDACTED}`;
    if (p && glued === '' && p.both?.includes(letter)) {
      this.expect = 'secret';
      return arg;
    }
    if (p && glued === '' && p.glued?.includes(letter)) {
      this.expect = 'secret-word';
      return arg;
    }
    if (USER_PASSWORD_OPTIONS.has(letter)) {
      if (glued === '') {
        this.expect = 'user-password';
        return arg;
      }
      return `-${letter}${glued.includes('://') ? redactValue(glued) : redactUserPassword(glued)}`;
    }
    return null;
  }

  /** `--name`, `-name`, `--name=value`, `-name=value`. */
  private option(arg: string, dashes: string, name: string, value: string | undefined): string {
    if (value !== undefined) {
      if (isSecretName(name) && value !== '') return `${dashes}${name}=${REDACTED}`;
      if (USER_PASSWORD_OPTIONS.has(name)) return `${dashes}${name}=${redactUserPassword(value)}`;
      return this.words ? arg : `${dashes}${name}=${redactText(value)}`;
    }
    if (USER_PASSWORD_OPTIONS.has(name)) this.expect = 'user-password';
    else if (/^(?:cookie|oauth2-bearer)$/.test(name) || isSecretName(name)) this.expect = 'secret';
    return arg;
  }
}

/** Redacts a string that may hold several words (a shell command, a libpq DSN) or a header. */
function redactText(text: string): string {
  const s = text.replace(PEM_PRIVATE_KEY, REDACTED); // before words split it
  if (!/\s/.test(s)) return redactValue(s);
  const header = HEADER.exec(s);
  if (header && isSecretHeader(header[2] as string)) return redactValue(s);
  return redactWords(s);
}

/** Redacts the words of a string that holds several (a shell command, a libpq DSN). */
function redactWords(s: string): string {
  const r = new Redactor(true);
  const parts = s.split(/(\s+)/);
  const limit = Math.min(parts.length, 2 * MAX_WORDS);
  for (let i = 0; i < limit; i += 2) parts[i] = r.token(parts[i] as string);
  return redactValue(parts.join(''));
}

/** Redacts one argument on its own (no option before it). */
export function redactArg(arg: string): string {
  return redactOne(new Redactor(), arg);
}

/**
 * Returns a copy of `argv` that is safe to store: secrets replaced by `[REDACTED]`, control and
 * invalid characters replaced, each argument and the argument count capped.
 */
export function redactArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  const r = new Redactor();
  const limit = Math.min(argv.length, MAX_ARGS);
  for (let i = 0; i < limit; i++) out.push(redactOne(r, String(argv[i] ?? '')));
  if (argv.length > MAX_ARGS) out.push(`[+${argv.length - MAX_ARGS} more arguments]`);
  return out;
}

/**
 * Cuts `arg` to what is scanned, replaces control characters (a terminal escape in a stored argv
 * is an attack), redacts, and caps the result at MAX_ARG_CHARS saying how much was cut.
 */
function redactOne(r: Redactor, arg: string): string {
  const scanned =
    arg.length > MAX_ARG_CHARS + SCAN_SLACK_CHARS ? arg.slice(0, MAX_ARG_CHARS + SCAN_SLACK_CHARS) : arg;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
  const redacted = r.token(scanned.replace(/[\u0000-\u0008\u000b-\u001f\u007f\u009b]/g, '\uFFFD'));
  if (redacted.length <= MAX_ARG_CHARS && arg.length <= MAX_ARG_CHARS) return redacted;
  return `${redacted.slice(0, MAX_ARG_CHARS)}[+${Math.max(0, arg.length - MAX_ARG_CHARS)} chars]`;
}
