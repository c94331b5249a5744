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
 * - program-specific options and positions: `mysql -pSECRET`, `curl -u user:pw`, `redis-cli -a pw`,
 *   `gh secret set -b v`, `bw --session v`, `xfreerdp /p:pw`, `htpasswd -b file user pw`,
 *   `mc alias set NAME URL KEY SECRET`, … (the PROGRAMS table);
 * - a bare secret word and the value after it (`nmcli … password v`, `mysqladmin password v`,
 *   `rclone config create … secret_access_key v`), unless the value is a subcommand verb;
 * - SQL literals in any string (`psql -c "ALTER USER u PASSWORD 'v'"`, `IDENTIFIED BY 'v'`);
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
  'psk',
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
const SECRET_HINT = /pass|pw|secret|token|key|cred|auth|cookie|bearer|dsn|sig|code|jwt|session|sid|psk/i;

/** Session variables of password-manager CLIs (`BW_SESSION`, `OP_SESSION_my`): the session is the vault key. */
const SESSION_VARIABLE = /^(?:bw_session|op_session_[a-z0-9_]{1,64})$/i;

/** True when an option, variable, header or parameter called `name` carries a secret value. */
export function isSecretName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME_CHARS) return false;
  const lower = name.toLowerCase();
  if (!SECRET_HINT.test(lower)) return false; // most names
  if (SESSION_VARIABLE.test(lower)) return true;
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
  /** Long options whose value is a secret although their name does not say so (`bw --session v`). */
  readonly long?: readonly string[];
  /** Windows-style `/name:value` options whose value is a secret (`xfreerdp /p:pw`), lower case. */
  readonly slash?: readonly string[];
  /** Short options that take a value, so that value is not counted as a positional argument (`htpasswd -C 10`). */
  readonly valueLetters?: string;
  /**
   * True when the positional argument at `index` (0-based, after the program or subcommand) is a
   * secret; `letters` are the short flags seen so far, `afterUrl` whether a positional URL came before.
   */
  readonly secretPositional?: (index: number, letters: ReadonlySet<string>, afterUrl: boolean) => boolean;
  /** Prose (`echo`, `printf`): bare secret words are words, not `password v` pairs. */
  readonly prose?: boolean;
}

const MYSQL: ProgramOptions = { glued: 'p' };
const FREERDP: ProgramOptions = { slash: ['p', 'pth', 'gp'] }; // password, pass-the-hash, gateway password
/** `mc alias set NAME URL KEY SECRET`: every positional after the URL (key and secret; option values there go too). */
const MC_ALIAS_SET: ProgramOptions = { secretPositional: (_i, _l, afterUrl) => afterUrl };
const PROSE: ProgramOptions = { prose: true };
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
  // `--session` is the vault's unlock key; bw also takes it after any subcommand
  bw: { long: ['session'] },
  op: { long: ['session'] },
  skopeo: {}, // --src-creds/--dest-creds: USER_PASSWORD_OPTIONS, any `*-creds`
  gh: { subcommands: { secret: { subcommands: { set: { both: 'b', long: ['body'] } } } } },
  doctl: { both: 't' }, // -t/--access-token is a global doctl flag
  xfreerdp: FREERDP,
  xfreerdp3: FREERDP,
  wlfreerdp: FREERDP,
  'sdl-freerdp': FREERDP,
  wfreerdp: FREERDP,
  rdesktop: { both: 'p' },
  twine: { both: 'p' },
  // `htpasswd -b[c…] file user password`, `htpasswd -nb user password`; -C and -r take a number
  htpasswd: {
    valueLetters: 'Cr',
    secretPositional: (i, letters) => letters.has('b') && i === (letters.has('n') ? 1 : 2),
  },
  mc: {
    subcommands: {
      alias: { subcommands: { set: MC_ALIAS_SET, add: MC_ALIAS_SET } },
      config: { subcommands: { host: { subcommands: { add: MC_ALIAS_SET } } } },
    },
  },
  echo: PROSE,
  printf: PROSE,
  passwd: {}, // `passwd bob`: a program named like a secret word
};

/**
 * A bare word that names a secret and takes the next argument as its value (`nmcli … password v`,
 * `mysqladmin password v`, SQL `PASSWORD v` word by word). Config-key spellings with `_` or `.`
 * count when their last part is one of BARE_SECRET_LAST_PARTS (`secret_access_key`, `wifi-sec.psk`,
 * `db.password`); hyphenated words do not (they are program and package names: `apt-key`, `react-cookie`).
 */
const BARE_SECRET_WORDS = new Set(['password', 'passwd', 'passphrase', 'secret', 'token', 'psk']);
const BARE_SECRET_LAST_PARTS = new Set([
  'password',
  'passwd',
  'passphrase',
  'pass',
  'pwd',
  'psk',
  'secret',
  'token',
]);
/** After `_` only (`api_key`, `secret_access_key`): a dotted `x.key` is a file name. */
const BARE_SECRET_LAST_PARTS_UNDERSCORE = new Set(['key', 'apikey']);
/**
 * Words after a bare secret word that make it a subcommand or a noun, not a pair: `gh secret set`,
 * `kubectl create secret generic`, `vault token lookup`. A password that is one of these stays.
 */
const SUBCOMMAND_VERBS = new Set([
  // SQL: `SET PASSWORD FOR u = …`, `IDENTIFIED WITH mysql_native_password BY …` (the SQL rules take the literal)
  'for',
  'by',
  'as',
  'access',
  'add',
  'apply',
  'approve',
  'capabilities',
  'change',
  'check',
  'clear',
  'create',
  'del',
  'delete',
  'describe',
  'disable',
  'docker-registry',
  'edit',
  'enable',
  'erase',
  'exec',
  'export',
  'fill',
  'gen',
  'generate',
  'generic',
  'get',
  'help',
  'import',
  'info',
  'init',
  'inspect',
  'list',
  'login',
  'logout',
  'lookup',
  'ls',
  'new',
  'patch',
  'put',
  'read',
  'reject',
  'remove',
  'renew',
  'reset',
  'restore',
  'revoke',
  'rm',
  'rotate',
  'run',
  'set',
  'show',
  'status',
  'store',
  'sync',
  'test',
  'tidy',
  'tls',
  'unset',
  'update',
  'use',
  'verify',
  'version',
  'versions',
  'view',
  'write',
]);

/** `kubectl get secret NAME`, `vault create token …`: after a verb, `secret`/`token` name a kind of resource. */
function isResourceNoun(word: string, previous: string): boolean {
  return /^(?:secret|token)$/i.test(word) && SUBCOMMAND_VERBS.has(previous.toLowerCase());
}

/** True for a word that takes the next argument as its secret value (see BARE_SECRET_WORDS). */
function isBareSecretWord(word: string): boolean {
  if (word.length > MAX_NAME_CHARS || !/^[A-Za-z][A-Za-z0-9_.-]*$/.test(word)) return false;
  const lower = word.toLowerCase();
  if (BARE_SECRET_WORDS.has(lower)) return true;
  if (!/[_.]/.test(lower) || !isSecretName(lower)) return false;
  if (lower.includes('-') && !lower.includes('.')) return false;
  const last = lower.split(/[_.]/).at(-1) ?? '';
  if (BARE_SECRET_LAST_PARTS.has(last)) return true;
  return BARE_SECRET_LAST_PARTS_UNDERSCORE.has(last) && lower.at(-last.length - 1) === '_';
}

/** Options whose value is `user:password` (curl, wget, lftp `user,pass`, smbclient `user%pass`). */
const USER_PASSWORD_OPTIONS = new Set(['u', 'U', 'user', 'proxy-user', 'http-user', 'creds', 'userpass']);

/** Also `user:password`: any `*-creds` / `*_creds` option (`skopeo --src-creds`, `--dest-creds`). */
function isUserPasswordOption(name: string): boolean {
  return USER_PASSWORD_OPTIONS.has(name) || /^[A-Za-z0-9]{1,32}[-_]creds$/i.test(name);
}

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
  /\bs\.[A-Za-z0-9]{24}\b/g, // HashiCorp Vault service token before 1.10 (`s.` + 24 base62)
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

/**
 * SQL password literals (`psql -c`, `mysql -e`, `sqlcmd -Q`): `PASSWORD 'v'`, `PASSWORD = 'v'`,
 * `SET PASSWORD FOR u = PASSWORD('v')`, `IDENTIFIED [WITH plugin] BY [PASSWORD] 'v'` (Oracle's
 * unquoted `IDENTIFIED BY v` too). A literal runs to its closing quote or the end of the string, and
 * is consumed by the match, so an unclosed quote is scanned once.
 */
const SQL_PASSWORD =
  /\b(PASSWORD(?:\s+FOR\s+[^\s=]{1,256})?(?=[\s=(])\s*(?:=\s*)?(?:PASSWORD\s*)?(?:\(\s*)?)('[^']*'?|"[^"]*"?)/gi;
const SQL_IDENTIFIED =
  /\b(IDENTIFIED\s+(?:WITH\s+[A-Za-z0-9_]{1,64}\s+)?(?:BY|AS)\s+(?:PASSWORD\s+)?)('[^']*'?|"[^"]*"?|[^\s'";,)]+)/gi;

/** `prefix 'literal'` → `prefix '[REDACTED]'`, keeping the quotes that were there. */
function redactSqlLiteral(_m: string, prefix: string, literal: string): string {
  const q = literal[0] === "'" || literal[0] === '"' ? literal[0] : '';
  const closed = q !== '' && literal.length > 1 && literal.endsWith(q);
  return `${prefix}${q}${REDACTED}${closed ? q : ''}`;
}

/** SQL password literals (SQL_PASSWORD, SQL_IDENTIFIED) in `s`. */
function redactSql(s: string): string {
  let out = s;
  if (/password/i.test(out)) out = out.replace(SQL_PASSWORD, redactSqlLiteral);
  if (/identified/i.test(out)) out = out.replace(SQL_IDENTIFIED, redactSqlLiteral);
  return out;
}

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
  out = redactSql(out);
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
type Expect = 'none' | 'secret' | 'secret-word' | 'pair-value' | 'user-password' | 'auth-scheme' | 'shell';

/** Redacts a sequence of tokens (an argv, or the words of a shell command string). */
class Redactor {
  private expect: Expect = 'none';
  private program: ProgramOptions | null = null;
  private previous = '';
  /** Short flags seen since the program or subcommand (for secretPositional). */
  private letters = new Set<string>();
  /** Positional arguments seen since the program or subcommand. */
  private positionals = 0;
  /** A positional URL came since the program or subcommand. */
  private afterUrl = false;
  /** The previous token was a short option that takes a value (valueLetters). */
  private optionValue = false;

  /**
   * @param words true for the words of one string: value rules (URLs, shapes, `name=value`) are
   * then left to one pass over the whole string instead of one per word.
   */
  constructor(private readonly words = false) {}

  token(raw: string): string {
    // in shell strings, quotes stay around the word; classification looks inside them (an argv
    // element's quotes are its own characters)
    const m = (this.words ? /^(['"]?)([\s\S]*?)(['"]?)$/ : /^()([\s\S]*)()$/).exec(raw) as RegExpExecArray;
    const [, open = '', core = '', close = ''] = m;
    const wrap = (s: string): string => `${open}${s}${close}`;
    const expect = this.expect;
    const previous = this.previous;
    this.expect = 'none';
    this.previous = core;
    if (expect === 'secret' && !core.startsWith('--')) return wrap(REDACTED);
    if (expect === 'secret-word' && !core.startsWith('-') && core !== '') {
      // `mysqladmin -p password NEW`: `password` is then the command, and NEW its value
      if (isBareSecretWord(core)) this.expect = 'secret-word';
      return wrap(REDACTED);
    }
    if (expect === 'pair-value' && core === '=') {
      this.expect = 'pair-value'; // SQL `PASSWORD = 'v'` word by word
      return raw;
    }
    if (
      expect === 'pair-value' &&
      !core.startsWith('-') &&
      !core.startsWith(REDACTED) && // an SQL literal, already redacted whole
      core !== '' &&
      !SUBCOMMAND_VERBS.has(core.toLowerCase())
    )
      return wrap(REDACTED);
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
      this.expect = 'secret-word'; // an option next is not the value (`gh secret set KEY -b v`)
      return raw;
    }
    // a subcommand (`gh secret set`) and a program's own positions (`htpasswd -b f u password`) come first
    const p = this.program;
    if (
      p?.secretPositional ||
      (p?.subcommands && Object.hasOwn(p.subcommands, core)) ||
      Object.hasOwn(PROGRAMS, core.toLowerCase()) // `passwd bob`: the program, not a pair
    )
      return wrap(this.classify(core));
    // `nmcli … password v`, `rclone config create … secret_access_key v`
    if (!p?.prose && isBareSecretWord(core) && !isResourceNoun(core, previous)) {
      this.expect = 'pair-value';
      return raw;
    }
    return wrap(this.classify(core));
  }

  private classify(arg: string): string {
    // a secret position before program names: the password of `htpasswd -b f u sh` is not a shell
    const positional = this.positional(arg);
    if (positional !== null) return positional;
    const base = (arg.split(/[/\\]/).at(-1) ?? '').replace(/\.exe$/i, '').toLowerCase();
    if (Object.hasOwn(PROGRAMS, base)) {
      this.enter(PROGRAMS[base] as ProgramOptions);
      return arg;
    }
    const sub = this.program?.subcommands;
    if (sub && Object.hasOwn(sub, arg)) {
      this.enter(sub[arg] as ProgramOptions);
      return arg;
    }
    const slash = /^\/([A-Za-z][A-Za-z0-9_-]{0,63})([:=])[\s\S]/.exec(arg);
    if (
      slash &&
      (this.program?.slash?.includes((slash[1] as string).toLowerCase()) || isSecretName(slash[1] as string))
    )
      return `/${slash[1]}${slash[2]}${REDACTED}`; // xfreerdp /p:pw, cmdkey /pass:pw
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

  private enter(program: ProgramOptions): void {
    this.program = program;
    this.letters = new Set();
    this.positionals = 0;
    this.afterUrl = false;
    this.optionValue = false;
  }

  /**
   * Tracks flags and positional arguments for programs with secret positions (htpasswd, mc);
   * `[REDACTED]` for a positional that is a secret, else null (the argument is classified as usual).
   */
  private positional(arg: string): string | null {
    const p = this.program;
    if (!p?.secretPositional) return null;
    const optionValue = this.optionValue;
    this.optionValue = false;
    if (arg.startsWith('-')) {
      if (/^-[A-Za-z]+$/.test(arg)) {
        for (const l of arg.slice(1)) this.letters.add(l);
        this.optionValue = p.valueLetters?.includes(arg.at(-1) as string) ?? false;
      }
      return null;
    }
    if (optionValue) return null;
    const secret = p.secretPositional(this.positionals++, this.letters, this.afterUrl);
    if (arg.includes('://')) this.afterUrl = true;
    return secret ? REDACTED : null;
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
    if (isUserPasswordOption(letter)) {
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
    const programSecret = dashes === '--' && this.program?.long?.includes(name) === true;
    if (value !== undefined) {
      if ((programSecret || isSecretName(name)) && value !== '') return `${dashes}${name}=${REDACTED}`;
      if (isUserPasswordOption(name)) return `${dashes}${name}=${redactUserPassword(value)}`;
      return this.words ? arg : `${dashes}${name}=${redactText(value)}`;
    }
    if (isUserPasswordOption(name)) this.expect = 'user-password';
    else if (programSecret || /^(?:cookie|oauth2-bearer)$/.test(name) || isSecretName(name))
      this.expect = 'secret';
    return arg;
  }
}

/** Redacts a string that may hold several words (a shell command, a libpq DSN) or a header. */
function redactText(text: string): string {
  // before words split them: a key block, an SQL literal with spaces in it
  const s = redactSql(text.replace(PEM_PRIVATE_KEY, REDACTED));
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
