# fish completion for guardd — generated from its option definitions (npm run docs)
complete -c guardd -f
complete -c guardd -l config -r -F -d 'config file (default: /etc/toolguard/config.json)'
complete -c guardd -l local -d 'run in the foreground with state in ./.toolguard, an embedded guard-collector on 127.0.0.1 and the example ban list signed by a local development key (what `npm start` runs); it acts only on your own processes started after it (as root: on none, see --enforce) and on packages under its own directory, and reports anything else as "would block"'
complete -c guardd -l local-dir -r -F -d 'state directory of --local (default ./.toolguard)'
complete -c guardd -l local-policy -r -F -d 'unsigned policy body --local signs and enforces (default policy/example-policy.json)'
complete -c guardd -l enforce -d 'with --local as root: stop matching processes that any user starts from now on (without it, root only reports)'
complete -c guardd -l version -s V -d 'print the program name and version ("guardd 0.1.0")'
complete -c guardd -l help -s h -d 'print help with examples'
