# bash completion for guardctl — generated from the command definitions (npm run docs)
_guardctl() {
  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
  local i w cmd=() words=""
  case "$prev" in
    --config|--socket-dir|--policy|--key|--out|--previous) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${COMP_WORDS[i]}"
    case "$w" in
      --config|--socket-dir) ((i++)) ;;
      -*) ;;
      *) cmd+=("$w") ;;
    esac
  done
  if [[ "$cur" == -* ]]; then
    case "${cmd[*]}" in
      "config") words="--help" ;;
      "doctor") words="--help" ;;
      "events") words="--since --type --limit --follow --help" ;;
      "explain") words="--help" ;;
      "package") words="--collector-url --enroll-secret-file --trusted-key --format --win-runtime --out --help" ;;
      "policy clear-shadow") words="--collector --admin-token-file --message --by --help" ;;
      "policy diff") words="--help" ;;
      "policy init") words="--out --help" ;;
      "policy keygen") words="--out --help" ;;
      "policy lint") words="--help" ;;
      "policy promote") words="--collector --admin-token-file --message --by --shadow-version --help" ;;
      "policy publish") words="--key --collector --admin-token-file --message --by --shadow --help" ;;
      "policy reload") words="--help" ;;
      "policy show") words="--help" ;;
      "policy sign") words="--key --out --previous --help" ;;
      "policy test") words="--policy --kind --user --help" ;;
      "policy verify") words="--key --threshold --help" ;;
      "quarantine list") words="--all --help" ;;
      "quarantine restore") words="--force --help" ;;
      "status") words="-v --verbose --help" ;;
      *) words="--json --config --socket-dir -V --version -h --help" ;;
    esac
  elif [ ${#cmd[@]} -eq 0 ]; then
    words="config doctor events explain package policy quarantine status help"
  elif [ ${#cmd[@]} -eq 1 ]; then
    case "${cmd[0]}" in
      policy) words="clear-shadow diff init keygen lint promote publish reload show sign test verify" ;;
      quarantine) words="list restore" ;;
      *) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
  else
    COMPREPLY=($(compgen -f -- "$cur")); return
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _guardctl guardctl
