# bash completion for guardd — generated from its option definitions (npm run docs)
_guardd() {
  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
  case "$prev" in
    --config|--local-dir|--local-policy) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  COMPREPLY=($(compgen -W "--config --local --local-dir --local-policy --enforce -V --version -h --help" -- "$cur"))
}
complete -F _guardd guardd
