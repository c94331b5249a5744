{
  "targets": [
    {
      "target_name": "quickexit",
      "sources": ["quickexit.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "conditions": [["OS=='win'", { "type": "none", "sources!": ["quickexit.c"] }]]
    }
  ]
}
