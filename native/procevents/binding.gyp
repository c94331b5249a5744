{
  "targets": [
    {
      "target_name": "procevents",
      "sources": ["procevents.c", "walker.c", "boost.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "conditions": [["OS!='linux'", { "type": "none", "sources!": ["procevents.c", "walker.c", "boost.c"] }]]
    }
  ]
}
