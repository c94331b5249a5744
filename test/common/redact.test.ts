import { describe, expect, it } from 'vitest';
import { isSecretName, MAX_ARG_CHARS, MAX_ARGS, REDACTED, redactArgv } from '../../src/common/redact.js';

const R = REDACTED;
// Fake secrets in the shapes real ones have (none of them is a live credential).
const GHP = 'ghp_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7c';
const JWT =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';
const PEM = [
  '-----BEGIN OPENSSH PRIVATE KEY-----',
  'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW',
  'QyNTUxOQAAACBQk4Yk2vWq9j1Q8x3n5l6m7o8p9q0r1s2t3u4v5w6x7y8z9AAAAJgAAAAA',
  '-----END OPENSSH PRIVATE KEY-----',
].join('\n');

/** [what, argv in, argv stored]: real-world shapes of secrets on command lines. */
const SECRETS: [string, string[], string[]][] = [
  // options, both `--flag=v` and `--flag v`
  ['--token v', ['curl', '--token', 's3cr3t', 'x'], ['curl', '--token', R, 'x']],
  [
    '--password v',
    ['mysql', '-u', 'root', '--password', 'hunter2'],
    ['mysql', '-u', 'root', '--password', R],
  ],
  ['--password=v', ['psql', '--password=hunter2'], ['psql', `--password=${R}`]],
  ['--api-key=v', ['app', '--api-key=abc123'], ['app', `--api-key=${R}`]],
  ['--db-pass=v', ['migrate', '--db-pass=Tr0ub4dor'], ['migrate', `--db-pass=${R}`]],
  ['--db-pass v', ['migrate', '--db-pass', 'Tr0ub4dor'], ['migrate', '--db-pass', R]],
  ['--key v', ['tool', '--key', 'X9f8e7d6'], ['tool', '--key', R]],
  ['--key=v', ['tool', '--key=X9f8e7d6'], ['tool', `--key=${R}`]],
  ['--client-secret v', ['az', 'login', '--client-secret', 'cs~1'], ['az', 'login', '--client-secret', R]],
  [
    '--secret-access-key=v',
    ['cfg', '--secret-access-key=wJalrXUtnFEMI'],
    ['cfg', `--secret-access-key=${R}`],
  ],
  ['--auth user:pw', ['httpie', '--auth', 'bob:pa55'], ['httpie', '--auth', R]],
  [
    '--passphrase v',
    ['gpg', '--batch', '--passphrase', 'open sesame'],
    ['gpg', '--batch', '--passphrase', R],
  ],
  ['--oauth2-bearer v', ['curl', '--oauth2-bearer', 'tok123'], ['curl', '--oauth2-bearer', R]],
  [
    'keytool -storepass v',
    ['keytool', '-storepass', 'changeit', '-keypass', 'k3y'],
    ['keytool', '-storepass', R, '-keypass', R],
  ],
  ['openssl -pass pass:v', ['openssl', 'enc', '-pass', 'pass:hunter2'], ['openssl', 'enc', '-pass', R]],
  ['openssl -k v', ['openssl', 'enc', '-k', 'hunter2'], ['openssl', 'enc', '-k', R]],
  ['--user-password=v (glued words)', ['x', '--userpassword=pw1'], ['x', `--userpassword=${R}`]],
  // short options of the programs that take them
  ['mysql -pSECRET', ['mysql', '-uroot', '-pSECRET', 'db'], ['mysql', '-uroot', `-p${R}`, 'db']],
  [
    'mysqldump -pSECRET via path',
    ['/usr/bin/mysqldump', '-pS3cr3t!', 'shop'],
    ['/usr/bin/mysqldump', `-p${R}`, 'shop'],
  ],
  ['mariadb -pSECRET after sudo', ['sudo', 'mariadb', '-pSECRET'], ['sudo', 'mariadb', `-p${R}`]],
  [
    'mysql -p v (a database name after -p goes too)',
    ['mysql', '-u', 'root', '-p', 'hunter2'],
    ['mysql', '-u', 'root', '-p', R],
  ],
  [
    'az login -p v',
    ['az', 'login', '--service-principal', '-u', 'app-id', '-p', 's3cret'],
    ['az', 'login', '--service-principal', '-u', 'app-id', '-p', R],
  ],
  ['openssl -passin pass:v', ['openssl', 'rsa', '-passin', 'pass:hunter2'], ['openssl', 'rsa', '-passin', R]],
  [
    'openssl pass:v in a value',
    ['x', '--openssl-args=-passin pass:hunter2'],
    ['x', `--openssl-args=-passin ${R}`],
  ],
  ['Vault token', ['vault', 'login', 'hvs.CAESIJ0123456789abcdefghijkl'], ['vault', 'login', R]],
  [
    'camelCase option',
    ['app', '--apiKey', 'k1', '--clientSecret=c2', '--accessToken', 't3'],
    ['app', '--apiKey', R, `--clientSecret=${R}`, '--accessToken', R],
  ],
  ['sshpass -p v', ['sshpass', '-p', 'hunter2', 'ssh', 'host'], ['sshpass', '-p', R, 'ssh', 'host']],
  ['7z -pSECRET', ['7z', 'x', '-pSECRET', 'a.7z'], ['7z', 'x', `-p${R}`, 'a.7z']],
  ['redis-cli -a v', ['redis-cli', '-h', 'cache', '-a', 'hunter2'], ['redis-cli', '-h', 'cache', '-a', R]],
  [
    'docker login -p v',
    ['docker', 'login', '-u', 'bob', '-p', 'dckr_pat_x'],
    ['docker', 'login', '-u', 'bob', '-p', R],
  ],
  [
    'ldapsearch -w v',
    ['ldapsearch', '-D', 'cn=admin', '-w', 'hunter2'],
    ['ldapsearch', '-D', 'cn=admin', '-w', R],
  ],
  [
    'sqlcmd -P v',
    ['sqlcmd', '-S', 'db', '-U', 'sa', '-P', 'Passw0rd!'],
    ['sqlcmd', '-S', 'db', '-U', 'sa', '-P', R],
  ],
  ['zip -P v', ['zip', '-P', 'hunter2', 'a.zip', 'f'], ['zip', '-P', R, 'a.zip', 'f']],
  ['sqlplus user/pw@db', ['sqlplus', 'scott/tiger@orcl'], ['sqlplus', `scott/${R}@orcl`]],
  ['curl -u user:pw', ['curl', '-u', 'user:pw', 'https://x'], ['curl', '-u', `user:${R}`, 'https://x']],
  ['curl -uuser:pw', ['curl', '-uuser:pw', 'https://x'], ['curl', `-uuser:${R}`, 'https://x']],
  ['curl --user=user:pw', ['curl', '--user=user:pw'], ['curl', `--user=user:${R}`]],
  [
    'smbclient -U user%pw',
    ['smbclient', '-U', 'bob%hunter2', '//srv/share'],
    ['smbclient', '-U', `bob%${R}`, '//srv/share'],
  ],
  ['curl -b cookie', ['curl', '-b', 'session=abc123', 'https://x'], ['curl', '-b', R, 'https://x']],
  // HTTP headers as curl arguments
  [
    'Authorization: Bearer',
    ['curl', '-H', 'Authorization: Bearer abc.def'],
    ['curl', '-H', `Authorization: Bearer ${R}`],
  ],
  [
    'authorization: basic',
    ['curl', '-H', 'authorization: Basic Ym9iOnBhNTU='],
    ['curl', '-H', `authorization: Basic ${R}`],
  ],
  ['x-api-key header', ['curl', '-H', 'x-api-key: 0123456789abcdef'], ['curl', '-H', `x-api-key: ${R}`]],
  ['Cookie header', ['curl', '-H', 'Cookie: session=abc; csrftoken=def'], ['curl', '-H', `Cookie: ${R}`]],
  [
    'PRIVATE-TOKEN header',
    ['curl', '--header', 'PRIVATE-TOKEN: glpat-abc'],
    ['curl', '--header', `PRIVATE-TOKEN: ${R}`],
  ],
  [
    '--header=Authorization',
    ['curl', '--header=Authorization: token abc'],
    ['curl', `--header=Authorization: token ${R}`],
  ],
  ['X-Vault-Token header', ['curl', '-H', 'X-Vault-Token:s.abcdef'], ['curl', '-H', `X-Vault-Token:${R}`]],
  [
    'git -c http.extraheader',
    ['git', '-c', 'http.extraheader=AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hz', 'fetch'],
    ['git', '-c', `http.extraheader=AUTHORIZATION: basic ${R}`, 'fetch'],
  ],
  // URLs: userinfo and query parameters
  [
    'https user:pw@',
    ['git', 'clone', 'https://bob:pa55@host/r.git'],
    ['git', 'clone', `https://bob:${R}@host/r.git`],
  ],
  [
    'https TOKEN@',
    ['git', 'push', `https://${GHP}@github.com/x`],
    ['git', 'push', `https://${R}@github.com/x`],
  ],
  [
    '?password=',
    ['curl', 'https://h/login?user=bob&password=hunter2'],
    ['curl', `https://h/login?user=bob&password=${R}`],
  ],
  [
    '?access_token=',
    ['wget', 'https://api/x?access_token=abc&page=2'],
    ['wget', `https://api/x?access_token=${R}&page=2`],
  ],
  ['&token=', ['curl', 'https://h/a?x=1&token=t0k'], ['curl', `https://h/a?x=1&token=${R}`]],
  [
    'Azure SAS sig=',
    ['azcopy', 'https://a.blob.core.windows.net/c?sv=2022-11-02&sig=AbC%2Bd'],
    ['azcopy', `https://a.blob.core.windows.net/c?sv=2022-11-02&sig=${R}`],
  ],
  [
    'S3 presigned X-Amz-*',
    ['curl', 'https://b.s3.amazonaws.com/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=abcd&X-Amz-Expires=60'],
    ['curl', `https://b.s3.amazonaws.com/k?X-Amz-Credential=${R}&X-Amz-Signature=${R}&X-Amz-Expires=60`],
  ],
  [
    '?key= (Google)',
    ['curl', 'https://maps/api?key=AIzaSyA-1234567890abcdefghijklmnopqrs'],
    ['curl', `https://maps/api?key=${R}`],
  ],
  [
    'OAuth ?code=',
    ['open', 'http://localhost/cb?code=4/0AX4&state=s'],
    ['open', `http://localhost/cb?code=${R}&state=s`],
  ],
  // connection strings and DSNs
  ['postgres://', ['psql', 'postgres://app:s3cret@db:5432/app'], ['psql', `postgres://app:${R}@db:5432/app`]],
  [
    'mongodb+srv://',
    ['mongosh', 'mongodb+srv://u:p%40ss@c0.mongodb.net/db'],
    ['mongosh', `mongodb+srv://u:${R}@c0.mongodb.net/db`],
  ],
  [
    'redis://:pw@',
    ['redis-cli', '-u', 'redis://:hunter2@cache:6379/0'],
    ['redis-cli', '-u', `redis://:${R}@cache:6379/0`],
  ],
  [
    'amqp://',
    ['worker', '--broker', 'amqp://guest:guest@mq:5672/'],
    ['worker', '--broker', `amqp://guest:${R}@mq:5672/`],
  ],
  [
    'libpq DSN password=',
    ['psql', 'host=db user=app password=s3cret dbname=app'],
    ['psql', `host=db user=app password=${R} dbname=app`],
  ],
  [
    'ADO.NET Password=',
    ['app', 'Server=tcp:db,1433;User ID=sa;Password=P@ss;Encrypt=true'],
    ['app', `Server=tcp:db,1433;User ID=sa;Password=${R};Encrypt=true`],
  ],
  [
    'Azure AccountKey=',
    ['az', 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc+/=='],
    ['az', `DefaultEndpointsProtocol=https;AccountName=a;AccountKey=${R}`],
  ],
  [
    'JDBC ?password=',
    ['java', '-jar', 'a.jar', 'jdbc:mysql://db/shop?user=u&password=pw'],
    ['java', '-jar', 'a.jar', `jdbc:mysql://db/shop?user=u&password=${R}`],
  ],
  [
    'Sentry DSN key@',
    ['run', 'https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/1'],
    ['run', `https://${R}@o1.ingest.sentry.io/1`],
  ],
  // env-style KEY=value
  [
    'AWS_SECRET_ACCESS_KEY=',
    ['env', 'AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG', 'aws'],
    ['env', `AWS_SECRET_ACCESS_KEY=${R}`, 'aws'],
  ],
  ['GITHUB_TOKEN=', ['env', 'GITHUB_TOKEN=ghp_abc', 'run'], ['env', `GITHUB_TOKEN=${R}`, 'run']],
  ['PGPASSWORD=', ['env', 'PGPASSWORD=hunter2', 'psql'], ['env', `PGPASSWORD=${R}`, 'psql']],
  ['MYSQL_PWD=', ['env', 'MYSQL_PWD=hunter2'], ['env', `MYSQL_PWD=${R}`]],
  ['OPENAI_API_KEY=', ['env', 'OPENAI_API_KEY=whatever'], ['env', `OPENAI_API_KEY=${R}`]],
  [
    'docker -e SECRET=',
    ['docker', 'run', '-e', 'DB_PASSWORD=x1', 'img'],
    ['docker', 'run', '-e', `DB_PASSWORD=${R}`, 'img'],
  ],
  ['npm _auth', ['env', 'NPM_CONFIG__AUTH=Ym9iOnBhNTU='], ['env', `NPM_CONFIG__AUTH=${R}`]],
  ['SENTRY_DSN=', ['env', 'SENTRY_DSN=https://k@sentry.io/1'], ['env', `SENTRY_DSN=${R}`]],
  // well-known token shapes anywhere
  ['Anthropic key', ['claude', 'sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA'], ['claude', R]],
  ['OpenAI project key', ['x', 'sk-proj-abcdefghijklmnopqrstuvwxyz012345'], ['x', R]],
  ['GitHub classic token', ['gh', GHP], ['gh', R]],
  ['GitHub fine-grained PAT', ['gh', 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz'], ['gh', R]],
  ['GitLab PAT', ['glab', 'glpat-xxxxxxxxxxxxxxxxxxxx'], ['glab', R]],
  ['Slack bot token', ['bot', 'xoxb-1234567890-0987654321-AbCdEfGhIjKl'], ['bot', R]],
  [
    'Slack webhook URL',
    ['curl', 'https://hooks.slack.com/services/T000/B000/XXXXXXXX'],
    ['curl', `https://hooks.slack.com/services/${R}`],
  ],
  ['AWS access key id', ['aws', 'AKIAIOSFODNN7EXAMPLE'], ['aws', R]],
  ['AWS STS key id', ['aws', 'ASIAIOSFODNN7EXAMPLE'], ['aws', R]],
  ['Stripe live key', ['stripe', 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'], ['stripe', R]],
  ['npm token', ['npm', 'npm_abcdefghijklmnopqrstuvwxyz0123456789'], ['npm', R]],
  ['Hugging Face token', ['hf', 'hf_abcdefghijklmnopqrstuvwxyzABCDEFGH'], ['hf', R]],
  ['JWT', ['app', JWT], ['app', R]],
  ['PEM private key block', ['deploy', '--from-literal', PEM], ['deploy', '--from-literal', R]],
  [
    'legacy encrypted RSA key (dashes in the body)',
    [
      'x',
      '-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B\n\nMIIEpAIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----',
    ],
    ['x', R],
  ],
  [
    'PGP private key block',
    [
      'gpg',
      '--import',
      '-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0\n-----END PGP PRIVATE KEY BLOCK-----',
    ],
    ['gpg', '--import', R],
  ],
  ['PEM block cut short', ['x', PEM.slice(0, 80)], ['x', R]],
  [
    'PEM block inside a value',
    ['kubectl', `--from-literal=key=${PEM}`],
    ['kubectl', `--from-literal=key=${R}`],
  ],
  // secrets given as values of other options, JSON bodies and config setters
  [
    'kubectl --from-literal=password=v',
    ['kubectl', 'create', 'secret', 'generic', 'db', '--from-literal=password=s3cret'],
    ['kubectl', 'create', 'secret', 'generic', 'db', `--from-literal=password=${R}`],
  ],
  [
    'helm --set db.password=v (the rest of the argument goes too)',
    ['helm', 'install', 'x', '--set', 'db.password=s3cret,db.user=app'],
    ['helm', 'install', 'x', '--set', `db.password=${R}`],
  ],
  [
    'npm registry _authToken',
    ['npm', 'config', 'set', '//registry.example/:_authToken=abc-123'],
    ['npm', 'config', 'set', `//registry.example/:_authToken=${R}`],
  ],
  [
    'npm config set _authToken v',
    ['npm', 'config', 'set', '_authToken', 'abc-123'],
    ['npm', 'config', 'set', '_authToken', R],
  ],
  [
    'aws configure set key v',
    ['aws', 'configure', 'set', 'aws_secret_access_key', 'wJalrX'],
    ['aws', 'configure', 'set', 'aws_secret_access_key', R],
  ],
  [
    'git config user.password v',
    ['git', 'config', '--global', 'user.password', 'hunter2'],
    ['git', 'config', '--global', 'user.password', R],
  ],
  [
    'curl -d JSON body',
    ['curl', '-d', '{"user":"bob","password":"hunter2"}', 'https://x'],
    ['curl', '-d', `{"user":"bob","password":"${R}"}`, 'https://x'],
  ],
  [
    'curl -d form body',
    ['curl', '-d', 'user=bob&password=hunter2', 'https://x'],
    ['curl', '-d', `user=bob&password=${R}`, 'https://x'],
  ],
  [
    'httpie header item',
    ['http', 'GET', 'https://api', 'Authorization:Bearer abc'],
    ['http', 'GET', 'https://api', `Authorization:Bearer ${R}`],
  ],
  // inside shell command strings
  [
    'sh -c "mysql -pX"',
    ['sh', '-c', 'mysql -uroot -pSECRET shop < dump.sql'],
    ['sh', '-c', `mysql -uroot -p${R} shop < dump.sql`],
  ],
  [
    'bash -c with curl header',
    ['bash', '-c', 'curl -s -H "Authorization: Bearer abc123def" https://api'],
    ['bash', '-c', `curl -s -H "Authorization: Bearer ${R}" https://api`],
  ],
  [
    'sh -c with --token v',
    ['sh', '-c', 'deploy --token s3cr3t --env prod'],
    ['sh', '-c', `deploy --token ${R} --env prod`],
  ],
  [
    'sh -c with env prefix',
    ['sh', '-c', 'PGPASSWORD=hunter2 psql -h db'],
    ['sh', '-c', `PGPASSWORD=${R} psql -h db`],
  ],
  // program-specific positions and options (the PROGRAMS table)
  [
    'bw --session v',
    ['bw', 'list', 'items', '--session', 'N3bKq9vX2yZ+abc=='],
    ['bw', 'list', 'items', '--session', R],
  ],
  [
    'bw --session=v',
    ['bw', 'get', 'item', 'x', '--session=N3bKq9vX'],
    ['bw', 'get', 'item', 'x', `--session=${R}`],
  ],
  ['BW_SESSION=', ['env', 'BW_SESSION=N3bKq9vX2yZ', 'bw', 'sync'], ['env', `BW_SESSION=${R}`, 'bw', 'sync']],
  [
    'skopeo --src-creds/--dest-creds u:p',
    ['skopeo', 'copy', '--src-creds', 'bob:pa55', '--dest-creds=ci:t0k', 'docker://a', 'docker://b'],
    ['skopeo', 'copy', '--src-creds', `bob:${R}`, `--dest-creds=ci:${R}`, 'docker://a', 'docker://b'],
  ],
  [
    'gh secret set -b v',
    ['gh', 'secret', 'set', 'DEPLOY_KEY', '-b', 'hunter2', '--repo', 'o/r'],
    ['gh', 'secret', 'set', 'DEPLOY_KEY', '-b', R, '--repo', 'o/r'],
  ],
  [
    'gh secret set --body v / -bv / --body=v',
    ['gh', 'secret', 'set', 'A', '--body', 'v1', '-bv2', '--body=v3'],
    ['gh', 'secret', 'set', 'A', '--body', R, `-b${R}`, `--body=${R}`],
  ],
  ['doctl auth init -t v', ['doctl', 'auth', 'init', '-t', 'abc123def'], ['doctl', 'auth', 'init', '-t', R]],
  [
    'xfreerdp /p:pw (and /pth:, /gp:)',
    ['xfreerdp', '/v:host', '/u:bob', '/p:hunter2', '/pth:8846f7eaee8fb117', '/gp:gw-pw'],
    ['xfreerdp', '/v:host', '/u:bob', `/p:${R}`, `/pth:${R}`, `/gp:${R}`],
  ],
  [
    'cmdkey /pass:pw (secret-named /name:v)',
    ['cmdkey', '/generic:srv', '/user:bob', '/pass:hunter2'],
    ['cmdkey', '/generic:srv', '/user:bob', `/pass:${R}`],
  ],
  [
    'rdesktop -p pw',
    ['rdesktop', '-u', 'bob', '-p', 'hunter2', 'host'],
    ['rdesktop', '-u', 'bob', '-p', R, 'host'],
  ],
  [
    'twine upload -p pw',
    ['twine', 'upload', '-u', '__token__', '-p', 'hunter2', 'dist/x.whl'],
    ['twine', 'upload', '-u', '__token__', '-p', R, 'dist/x.whl'],
  ],
  [
    'htpasswd -b file user pw',
    ['htpasswd', '-b', '/etc/nginx/.htpasswd', 'bob', 'hunter2'],
    ['htpasswd', '-b', '/etc/nginx/.htpasswd', 'bob', R],
  ],
  [
    'htpasswd -cbB -C 12 file user pw',
    ['htpasswd', '-cbB', '-C', '12', 'users', 'bob', 'hunter2'],
    ['htpasswd', '-cbB', '-C', '12', 'users', 'bob', R],
  ],
  ['htpasswd -nb user pw', ['htpasswd', '-nb', 'bob', 'hunter2'], ['htpasswd', '-nb', 'bob', R]],
  [
    'htpasswd -b … password "password"',
    ['htpasswd', '-b', 'f', 'bob', 'password'],
    ['htpasswd', '-b', 'f', 'bob', R],
  ],
  [
    'mc alias set NAME URL KEY SECRET',
    ['mc', 'alias', 'set', 'minio', 'http://127.0.0.1:9000', 'minioadmin', 'm1n10-S3cret'],
    ['mc', 'alias', 'set', 'minio', 'http://127.0.0.1:9000', R, R],
  ],
  [
    'mc config host add NAME URL KEY SECRET',
    ['mc', 'config', 'host', 'add', 's3', 'https://s3.example', 'AK1', 'SK1', '--api', 'S3v4'],
    ['mc', 'config', 'host', 'add', 's3', 'https://s3.example', R, R, '--api', R],
  ],
  // a bare secret word and the value after it
  [
    'nmcli … password v',
    ['nmcli', 'dev', 'wifi', 'connect', 'Home', 'password', 'hunter2'],
    ['nmcli', 'dev', 'wifi', 'connect', 'Home', 'password', R],
  ],
  [
    'nmcli con modify … wifi-sec.psk v',
    ['nmcli', 'con', 'modify', 'Home', 'wifi-sec.psk', 'hunter2'],
    ['nmcli', 'con', 'modify', 'Home', 'wifi-sec.psk', R],
  ],
  [
    'mysqladmin password v',
    ['mysqladmin', '-u', 'root', 'password', 'N3wPass'],
    ['mysqladmin', '-u', 'root', 'password', R],
  ],
  [
    'mysqladmin -p password v (both go)',
    ['mysqladmin', '-u', 'root', '-p', 'password', 'N3wPass'],
    ['mysqladmin', '-u', 'root', '-p', R, R],
  ],
  [
    'rclone config create … secret_access_key v',
    ['rclone', 'config', 'create', 'r', 's3', 'access_key_id', 'AK1', 'secret_access_key', 'wJalrX'],
    ['rclone', 'config', 'create', 'r', 's3', 'access_key_id', 'AK1', 'secret_access_key', R],
  ],
  [
    'sh -c with a bare pair',
    ['sh', '-c', 'nmcli dev wifi connect Home password hunter2 ifname wlan0'],
    ['sh', '-c', `nmcli dev wifi connect Home password ${R} ifname wlan0`],
  ],
  // SQL literals in -c / -e strings
  [
    "psql -c PASSWORD '…'",
    ['psql', '-c', "ALTER USER app WITH PASSWORD 'hunter 2'"],
    ['psql', '-c', `ALTER USER app WITH PASSWORD '${R}'`],
  ],
  [
    "psql -c ENCRYPTED PASSWORD '…';",
    ['psql', '-c', "CREATE ROLE app LOGIN ENCRYPTED PASSWORD 's3cr3t'; GRANT x TO app"],
    ['psql', '-c', `CREATE ROLE app LOGIN ENCRYPTED PASSWORD '${R}'; GRANT x TO app`],
  ],
  [
    "mysql -e IDENTIFIED BY '…'",
    ['mysql', '-e', "CREATE USER 'u'@'%' IDENTIFIED BY 'hunter2'"],
    ['mysql', '-e', `CREATE USER 'u'@'%' IDENTIFIED BY '${R}'`],
  ],
  [
    'mysql -e IDENTIFIED WITH plugin BY "…"',
    ['mysql', '-e', 'ALTER USER u IDENTIFIED WITH caching_sha2_password BY "hunter2";'],
    ['mysql', '-e', `ALTER USER u IDENTIFIED WITH caching_sha2_password BY "${R}";`],
  ],
  [
    "mysql -e SET PASSWORD FOR u = PASSWORD('…')",
    ['mysql', '-e', "SET PASSWORD FOR 'u'@'h' = PASSWORD('hunter2')"],
    ['mysql', '-e', `SET PASSWORD FOR 'u'@'h' = PASSWORD('${R}')`],
  ],
  [
    'sqlplus IDENTIFIED BY v (unquoted)',
    ['sh', '-c', 'echo "ALTER USER scott IDENTIFIED BY tiger;" | sqlplus / as sysdba'],
    ['sh', '-c', `echo "ALTER USER scott IDENTIFIED BY ${R};" | sqlplus / as sysdba`],
  ],
  [
    'sqlcmd -Q PASSWORD = …',
    ['sqlcmd', '-Q', "CREATE LOGIN app WITH PASSWORD = 'P@ss w0rd'"],
    ['sqlcmd', '-Q', `CREATE LOGIN app WITH PASSWORD = '${R}'`],
  ],
  ['Vault token (old s. format)', ['vault', 'login', 's.Ab3dEf6hIj9kLm2nOp5qRs8t'], ['vault', 'login', R]],
  [
    'Vault token (old s. format) in a header',
    ['curl', '-H', 'X-Vault-Token: s.Ab3dEf6hIj9kLm2nOp5qRs8t', 'https://vault'],
    ['curl', '-H', `X-Vault-Token: ${R}`, 'https://vault'],
  ],
  [
    'Vault token (old s. format) in a shell string',
    ['sh', '-c', 'VAULT=s.Ab3dEf6hIj9kLm2nOp5qRs8t; vault read x'],
    ['sh', '-c', `VAULT=${R}; vault read x`],
  ],
];

/** Ordinary arguments that must stay exactly as they are. */
const KEPT: [string, string[]][] = [
  ['a node script', ['node', '/usr/lib/node_modules/x/cli.js', '--verbose']],
  ['--keyboard', ['setxkbmap', '--keyboard', 'pc105', '-layout', 'us']],
  ['--passive', ['ftp', '--passive', 'host']],
  ['--no-password (a switch)', ['psql', '--no-password', 'shop']],
  ['--password-file path', ['tool', '--password-file', '/run/secrets/db']],
  ['--token-limit, --max-tokens', ['llm', '--max-tokens', '4096', '--token-limit', '100']],
  ['--author, --authority', ['git', 'commit', '--author', 'A <a@x>', '--authority', 'ca']],
  ['ssh -p port', ['ssh', '-p', '2222', 'host']],
  ['docker run -p port mapping', ['docker', 'run', '-p', '8080:80', '-p8443:443', 'nginx']],
  ['mysql -p then an option', ['mysql', '-u', 'root', '-p', '-h', 'db']],
  ['psql -p port', ['psql', '-h', 'db', '-p', '5432']],
  ['-u user (no password)', ['mysql', '-u', 'root']],
  ['docker -u uid:gid', ['docker', 'run', '-u', '1000:1000', 'img']],
  ['file paths', ['cat', '/etc/passwd', '/home/bob/.ssh/known_hosts', './tokenizer.json']],
  ['URL without secrets', ['curl', 'https://example.com/a/b?page=2&sort=name#top']],
  ['ssh URL with a user', ['git', 'clone', 'ssh://git@github.com/org/repo.git']],
  ['env without secrets', ['env', 'HOME=/root', 'PATH=/usr/bin:/bin', 'LANG=C.UTF-8']],
  ['scikit-learn and task names', ['pip', 'install', 'scikit-learn', 'sk-video']],
  ['plain words', ['echo', 'the', 'password', 'is', 'not', 'here']],
  [
    'prose about auth in a shell string',
    ['sh', '-c', 'echo Basic authentication is disabled; echo Bearer tokens expire'],
  ],
  ['Content-Type header', ['curl', '-H', 'Content-Type: application/json', '-H', 'Accept: */*']],
  ['--key-id (a name, not a key)', ['aws', 'kms', 'encrypt', '--key-id', 'alias/app']],
  ['git config of a plain key', ['git', 'config', '--global', 'user.name', 'Bob']],
  ['JSON body without secrets', ['curl', '-d', '{"name":"bob","tokens":3}']],
  // bare secret words used as subcommands or nouns, not as `word value` pairs
  ['gh secret list', ['gh', 'secret', 'list', '--repo', 'o/r']],
  ['passwd user (the program)', ['sudo', 'passwd', 'bob']],
  ['kubectl get secret NAME', ['kubectl', 'get', 'secret', 'db-creds', '-o', 'yaml']],
  ['kubectl create secret generic', ['kubectl', 'create', 'secret', 'generic', 'db', '--dry-run=client']],
  ['vault token lookup', ['vault', 'token', 'lookup']],
  ['kubeadm token create', ['kubeadm', 'token', 'create', '--ttl', '1h']],
  ['a bare secret word last', ['nmcli', '--ask', 'dev', 'wifi', 'connect', 'Home', 'password']],
  ['hyphenated names (programs, packages)', ['npm', 'install', 'react-cookie', 'axios', 'apt-key', 'x']],
  ['files named like secrets', ['cp', 'server.key', 'token.json', '/etc/ssl/private/']],
  ['htpasswd without -b (it prompts)', ['htpasswd', '-c', '/etc/nginx/.htpasswd', 'bob']],
  ['skopeo --src-creds user only (it prompts)', ['skopeo', 'inspect', '--src-creds', 'bob', 'docker://a']],
  ['Windows-style paths and options', ['robocopy', 'C:\\src', 'D:\\dst', '/MIR', '/R:3', '/LOG:x.txt']],
  ['SQL without a password', ['psql', '-c', "SELECT name FROM users WHERE note = 'password reset'"]],
  ['s. names that are not 24 base62 chars', ['ls', 's.config', 's.Ab3dEf6hIj9kLm2nOp5qRs8tUv']],
];

describe('redactArgv', () => {
  it('has at least 40 secret shapes in its table', () => {
    expect(SECRETS.length).toBeGreaterThanOrEqual(40);
  });

  it.each(SECRETS)('redacts %s', (_n, input, expected) => {
    expect(redactArgv(input)).toEqual(expected);
  });

  it.each(KEPT)('keeps %s intact', (_n, input) => {
    expect(redactArgv(input)).toEqual(input);
  });

  it('replaces terminal control characters and caps sizes', () => {
    const out = redactArgv(['a\u001b[2Jb', 'x'.repeat(MAX_ARG_CHARS + 10), ...Array(MAX_ARGS + 5).fill('y')]);
    expect(out[0]).toBe('a\uFFFD[2Jb');
    expect(out[1]?.length).toBeLessThan(MAX_ARG_CHARS + 40);
    expect(out[1]).toMatch(/\[\+10 chars\]$/);
    expect(out).toHaveLength(MAX_ARGS + 1);
    expect(out.at(-1)).toBe('[+7 more arguments]');
  });

  it('finds a secret that straddles the cut', () => {
    const out = redactArgv(['x', `${'a'.repeat(MAX_ARG_CHARS - 10)} ${GHP}`]);
    expect(out[1]).not.toContain(GHP.slice(0, 12));
  });

  // Each shape is built to defeat a backtracking pattern: runs of the characters a greedy class
  // accepts, with the terminator it waits for missing.
  const hostile: [string, string[]][] = [
    ['one 1 MiB argument', ['x', `https://${'a:'.repeat(512 * 1024)}`]],
    ['256 arguments of 4 KiB URL fragments', Array(MAX_ARGS).fill(`${'a://b:'.repeat(800)}`)],
    ['query-string flood', Array(MAX_ARGS).fill(`?${'a=b&'.repeat(1100)}`)],
    ['JWT prefixes without dots', Array(MAX_ARGS).fill('eyJ'.repeat(1500))],
    ['PEM headers without an end', Array(MAX_ARGS).fill('-----BEGIN PRIVATE KEY-----'.repeat(160))],
    ['shell words and headers', Array(MAX_ARGS).fill('Authorization: Bearer x '.repeat(180))],
    ['segments and assignments', Array(MAX_ARGS).fill('password=;'.repeat(450))],
    ['inner assignments', Array(MAX_ARGS).fill('a.token=c,'.repeat(460))],
    ['JSON members', Array(MAX_ARGS).fill('"password": "'.repeat(330))],
    [
      'a PEM body of near-END dashes',
      Array(MAX_ARGS).fill(`-----BEGIN RSA PRIVATE KEY-----${'----E'.repeat(900)}`),
    ],
    ['one-letter shell words', Array(MAX_ARGS).fill('a '.repeat(2300))],
    ['query words with secret names', Array(MAX_ARGS).fill('a=b&pw=c '.repeat(520))],
    ['option words', Array(MAX_ARGS).fill('x -p '.repeat(930))],
    ['a million tiny arguments', Array(1024 * 1024).fill('-p')],
    ['bare secret words', Array(1024 * 1024).fill('password')],
    ['unclosed SQL literals', Array(MAX_ARGS).fill("PASSWORD '".repeat(460))],
    ['SQL PASSWORD FOR without =', Array(MAX_ARGS).fill(`PASSWORD FOR ${'x'.repeat(250)} `.repeat(16))],
    ['IDENTIFIED BY runs', Array(MAX_ARGS).fill('IDENTIFIED WITH a BY '.repeat(220))],
    ['slash options', Array(MAX_ARGS).fill(`/p:${'x'.repeat(4000)}`)],
    ['htpasswd positionals', ['htpasswd', '-b', ...Array(1024 * 1024).fill('u')]],
  ];
  it.each(hostile)('stays bounded on a hostile 1 MiB argv: %s', (_n, argv) => {
    const started = performance.now();
    const out = redactArgv(argv);
    // a sanity bound, four times the slowest shape here (0.45 s on a busy 2-core machine): a catastrophic pattern takes minutes
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(out.length).toBeLessThanOrEqual(MAX_ARGS + 1);
    for (const a of out) expect(a.length).toBeLessThan(MAX_ARG_CHARS + 40);
  });
});

describe('isSecretName', () => {
  const secret = [
    'password',
    'db-pass',
    'DB_PASSWORD',
    'PGPASSWORD',
    'api_key',
    'apikey',
    'x-api-key',
    'key',
    'storepass',
    'X-Amz-Signature',
    'client_secret',
    'oauth',
    'access_token',
  ];
  const plain = [
    'keyboard',
    'passive',
    'no-password',
    'password-file',
    'max-tokens',
    'author',
    'key-id',
    'tokenizer',
    'compress',
    'path',
  ];
  it.each(secret)('%s names a secret', (n) => expect(isSecretName(n)).toBe(true));
  it.each(plain)('%s does not', (n) => expect(isSecretName(n)).toBe(false));
});
