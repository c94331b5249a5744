{
  "targets": [
    {
      "target_name": "peercred",
      "sources": ["peercred.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "conditions": [["OS=='win'", { "type": "none", "sources!": ["peercred.c"] }]]
    }
  ]
}
