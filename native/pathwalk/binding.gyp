{
  "targets": [
    {
      "target_name": "pathwalk",
      "sources": ["pathwalk.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "conditions": [["OS=='win'", { "type": "none", "sources!": ["pathwalk.c"] }]]
    }
  ]
}
