{
  "targets": [
    {
      "target_name": "execperm",
      "sources": ["execperm.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-pthread"],
      "ldflags": ["-pthread"],
      "conditions": [["OS!='linux'", { "type": "none", "sources!": ["execperm.c"] }]]
    }
  ]
}
